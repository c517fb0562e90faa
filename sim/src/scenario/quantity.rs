//! Scenario values: durations, byte sizes, counts and probabilities, each either one value or a
//! range `"low..high"` the seed picks a point in.
//!
//! Written the way people write them: `"250ms"`, `"1.5s"`, `"-2s..5s"`, `"64KiB..1MiB"`,
//! `"0..1e-3"`, `4`, `"4..16"`. Parsing is strict: a unit that is not known, a range whose low
//! end lies above its high end, or a probability outside `[0, 1]` is an error naming the value,
//! so a typo in a scenario fails at load time and never silently turns a fault off.

use std::fmt;
use std::marker::PhantomData;

use rand::{Rng, RngCore};
use rand_chacha::ChaCha8Rng;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A kind of scalar a scenario can hold.
pub trait Quantity: Copy + PartialOrd + fmt::Debug {
    /// What the kind is called in error messages.
    const WHAT: &'static str;
    fn parse(text: &str) -> Result<Self, String>;
    fn from_int(value: i64) -> Result<Self, String>;
    fn from_float(value: f64) -> Result<Self, String>;
    /// A uniform draw from `low..=high`.
    fn pick(rng: &mut ChaCha8Rng, low: Self, high: Self) -> Self;
    /// The value as a scenario would write it (parses back to itself).
    fn render(self) -> String;
}

/// A duration in nanoseconds (never negative).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Nanos(pub u64);

/// A signed duration in nanoseconds, for clock skews and jumps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct SignedNanos(pub i64);

/// A size in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn is_zero(&self) -> bool {
        self.0 == 0
    }
}

/// A plain count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Count(pub u64);

/// A probability in `[0, 1]`.
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd, Default)]
pub struct Prob(pub f64);

fn split_number(text: &str) -> (&str, &str) {
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E')))
        .unwrap_or(text.len());
    // "1e3ms" is fine, but "5em" is not a thing; a trailing 'e' belongs to no unit we know.
    (&text[..end], text[end..].trim())
}

fn signed_nanos(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let (number, unit) = split_number(text);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (try \"250ms\" or \"1.5s\")"))?;
    let scale = match unit {
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "m" | "min" => 60e9,
        "h" => 3600e9,
        "" if value == 0.0 => 1.0,
        _ => {
            return Err(format!(
                "{text:?}: unknown duration unit {unit:?} (ns, us, ms, s, m, h)"
            ));
        }
    };
    let nanos = (value * scale).round();
    if !nanos.is_finite() || nanos.abs() > 9.0e18 {
        return Err(format!("{text:?} is out of range"));
    }
    Ok(nanos as i64)
}

fn render_nanos(nanos: i64) -> String {
    let abs = nanos.unsigned_abs();
    let sign = if nanos < 0 { "-" } else { "" };
    for (unit, scale) in [("s", 1_000_000_000u64), ("ms", 1_000_000), ("us", 1_000)] {
        if abs >= scale && abs.is_multiple_of(scale) {
            return format!("{sign}{}{unit}", abs / scale);
        }
    }
    format!("{sign}{abs}ns")
}

impl Quantity for Nanos {
    const WHAT: &'static str = "duration";
    fn parse(text: &str) -> Result<Self, String> {
        let nanos = signed_nanos(text)?;
        u64::try_from(nanos)
            .map(Nanos)
            .map_err(|_| format!("{text:?}: a duration here cannot be negative"))
    }
    fn from_int(value: i64) -> Result<Self, String> {
        match value {
            0 => Ok(Nanos(0)),
            _ => Err(format!(
                "{value}: give durations with a unit, e.g. \"{value}ms\""
            )),
        }
    }
    fn from_float(value: f64) -> Result<Self, String> {
        Self::from_int(value as i64)
    }
    fn pick(rng: &mut ChaCha8Rng, low: Self, high: Self) -> Self {
        Nanos(uniform(rng, low.0, high.0))
    }
    fn render(self) -> String {
        render_nanos(self.0 as i64)
    }
}

impl Quantity for SignedNanos {
    const WHAT: &'static str = "signed duration";
    fn parse(text: &str) -> Result<Self, String> {
        signed_nanos(text).map(SignedNanos)
    }
    fn from_int(value: i64) -> Result<Self, String> {
        match value {
            0 => Ok(SignedNanos(0)),
            _ => Err(format!(
                "{value}: give durations with a unit, e.g. \"{value}ms\""
            )),
        }
    }
    fn from_float(value: f64) -> Result<Self, String> {
        Self::from_int(value as i64)
    }
    fn pick(rng: &mut ChaCha8Rng, low: Self, high: Self) -> Self {
        let span = low.0.abs_diff(high.0);
        SignedNanos(low.0.wrapping_add(uniform(rng, 0, span) as i64))
    }
    fn render(self) -> String {
        render_nanos(self.0)
    }
}

impl Quantity for ByteSize {
    const WHAT: &'static str = "byte size";
    fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (number, unit) = split_number(text);
        let value: f64 = number
            .parse()
            .map_err(|_| format!("{text:?} is not a size (try \"64KiB\")"))?;
        let scale = match unit {
            "" | "B" => 1.0,
            "KiB" | "K" => 1024.0,
            "MiB" | "M" => 1024.0 * 1024.0,
            "GiB" | "G" => 1024.0 * 1024.0 * 1024.0,
            "KB" => 1e3,
            "MB" => 1e6,
            "GB" => 1e9,
            _ => {
                return Err(format!(
                    "{text:?}: unknown size unit {unit:?} (B, KiB, MiB, GiB)"
                ));
            }
        };
        let bytes = (value * scale).round();
        if !(0.0..9.0e18).contains(&bytes) {
            return Err(format!("{text:?} is out of range"));
        }
        Ok(ByteSize(bytes as u64))
    }
    fn from_int(value: i64) -> Result<Self, String> {
        u64::try_from(value)
            .map(ByteSize)
            .map_err(|_| format!("{value}: a size cannot be negative"))
    }
    fn from_float(value: f64) -> Result<Self, String> {
        Self::from_int(value as i64)
    }
    fn pick(rng: &mut ChaCha8Rng, low: Self, high: Self) -> Self {
        ByteSize(uniform(rng, low.0, high.0))
    }
    fn render(self) -> String {
        match self.0 {
            n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{}MiB", n >> 20),
            n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{}KiB", n >> 10),
            n => format!("{n}B"),
        }
    }
}

impl Quantity for Count {
    const WHAT: &'static str = "count";
    fn parse(text: &str) -> Result<Self, String> {
        text.trim()
            .parse()
            .map(Count)
            .map_err(|_| format!("{text:?} is not a whole number"))
    }
    fn from_int(value: i64) -> Result<Self, String> {
        u64::try_from(value)
            .map(Count)
            .map_err(|_| format!("{value}: a count cannot be negative"))
    }
    fn from_float(value: f64) -> Result<Self, String> {
        Err(format!("{value}: a count is a whole number"))
    }
    fn pick(rng: &mut ChaCha8Rng, low: Self, high: Self) -> Self {
        Count(uniform(rng, low.0, high.0))
    }
    fn render(self) -> String {
        self.0.to_string()
    }
}

impl Quantity for Prob {
    const WHAT: &'static str = "probability";
    fn parse(text: &str) -> Result<Self, String> {
        let value: f64 = text
            .trim()
            .parse()
            .map_err(|_| format!("{text:?} is not a probability"))?;
        Self::from_float(value)
    }
    fn from_int(value: i64) -> Result<Self, String> {
        Self::from_float(value as f64)
    }
    fn from_float(value: f64) -> Result<Self, String> {
        if (0.0..=1.0).contains(&value) {
            Ok(Prob(value))
        } else {
            Err(format!("{value}: a probability lies in [0, 1]"))
        }
    }
    fn pick(rng: &mut ChaCha8Rng, low: Self, high: Self) -> Self {
        // One draw whatever the range, so a pinned value consumes the generator like a range.
        let unit: f64 = rng.random();
        if low.0 == high.0 {
            return low;
        }
        Prob(low.0 + (high.0 - low.0) * unit)
    }
    fn render(self) -> String {
        format!("{:?}", self.0)
    }
}

/// One value or an inclusive range of them, as written in a scenario.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct Range<T> {
    pub low: T,
    pub high: T,
}

impl<T: Quantity> Range<T> {
    pub fn one(value: T) -> Self {
        Range {
            low: value,
            high: value,
        }
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let range = match text.split_once("..") {
            Some((low, high)) => Range {
                low: T::parse(low)?,
                high: T::parse(high.trim_start_matches('='))?,
            },
            None => Range::one(T::parse(text)?),
        };
        range.checked()
    }

    fn checked(self) -> Result<Self, String> {
        if self.low > self.high {
            return Err(format!(
                "{} range {}..{} is empty",
                T::WHAT,
                self.low.render(),
                self.high.render()
            ));
        }
        Ok(self)
    }

    /// The seed's point in the range. Always draws once, also for a single value, so pinning a
    /// range to one value (as `shrink` does) leaves every later draw unchanged.
    pub fn pick(&self, rng: &mut ChaCha8Rng) -> T {
        T::pick(rng, self.low, self.high)
    }

    pub fn render(&self) -> String {
        if self.low == self.high {
            self.low.render()
        } else {
            format!("{}..{}", self.low.render(), self.high.render())
        }
    }
}

impl<'de, T: Quantity> Deserialize<'de> for Range<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RangeVisitor<T>(PhantomData<T>);
        impl<T: Quantity> Visitor<'_> for RangeVisitor<T> {
            type Value = Range<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a {} or a range \"low..high\"", T::WHAT)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                T::from_int(v).map(Range::one).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                let v = i64::try_from(v).map_err(E::custom)?;
                self.visit_i64(v)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                T::from_float(v).map(Range::one).map_err(E::custom)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Range::parse(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(RangeVisitor(PhantomData))
    }
}

impl<T: Quantity> Serialize for Range<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.render())
    }
}

/// Plain (non-range) scalars read and write like a range of one value.
macro_rules! scalar_serde {
    ($($t:ty),*) => {$(
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let range = Range::<$t>::deserialize(deserializer)?;
                if range.low != range.high {
                    return Err(de::Error::custom(format!(
                        "expected one {}, not the range {}",
                        <$t>::WHAT,
                        range.render()
                    )));
                }
                Ok(range.low)
            }
        }

        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.render())
            }
        }
    )*};
}
scalar_serde!(Nanos, SignedNanos, ByteSize, Count, Prob);

/// A uniform draw from `low..=high` that consumes exactly one `u64` of `rng`, whatever the
/// range (multiply-shift; the bias is below 2^-64 per draw).
pub fn uniform(rng: &mut ChaCha8Rng, low: u64, high: u64) -> u64 {
    let span = u128::from(high - low) + 1;
    low + ((u128::from(rng.next_u64()) * span) >> 64) as u64
}

/// A uniform draw from `[point/2, 3·point/2]`: how a picked interval or latency varies from one
/// event to the next, so "every 2s" means gaps between 1s and 3s.
pub fn jitter(rng: &mut ChaCha8Rng, point: u64) -> u64 {
    let low = point / 2;
    let high = point.saturating_add(point / 2);
    uniform(rng, low, high)
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn durations_parse_with_units_and_ranges() {
        assert_eq!(Nanos::parse("250ms"), Ok(Nanos(250_000_000)));
        assert_eq!(Nanos::parse("1.5s"), Ok(Nanos(1_500_000_000)));
        assert_eq!(Nanos::parse("0"), Ok(Nanos(0)));
        assert!(Nanos::parse("5 parsecs").is_err());
        assert!(Nanos::parse("-1s").is_err());
        assert_eq!(SignedNanos::parse("-2s"), Ok(SignedNanos(-2_000_000_000)));
        let range = Range::<SignedNanos>::parse("-2s..5s").unwrap();
        assert_eq!(range.low, SignedNanos(-2_000_000_000));
        assert_eq!(range.render(), "-2s..5s");
        assert!(Range::<Nanos>::parse("2s..1s").is_err());
    }

    #[test]
    fn sizes_counts_and_probabilities_parse() {
        assert_eq!(ByteSize::parse("64KiB"), Ok(ByteSize(65_536)));
        assert_eq!(ByteSize(65_536).render(), "64KiB");
        assert_eq!(Range::<Count>::parse("4..16").unwrap().high, Count(16));
        assert_eq!(Prob::parse("1e-3"), Ok(Prob(0.001)));
        assert!(Prob::parse("1.5").is_err());
    }

    #[test]
    fn picks_stay_in_range_and_always_draw() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let range = Range::<Nanos>::parse("1ms..2ms").unwrap();
        for _ in 0..100 {
            let v = range.pick(&mut rng);
            assert!((1_000_000..=2_000_000).contains(&v.0));
        }
        let mut a = ChaCha8Rng::seed_from_u64(2);
        let mut b = ChaCha8Rng::seed_from_u64(2);
        let wide = Range::<Prob>::parse("0..1").unwrap();
        let pinned = Range::one(wide.pick(&mut a));
        assert_eq!(pinned.pick(&mut b), pinned.low);
        assert_eq!(
            wide.pick(&mut a),
            wide.pick(&mut b),
            "pinning keeps later draws"
        );
    }
}
