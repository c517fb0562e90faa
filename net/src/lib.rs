//! RESP3 codec and listener traits (lands next).
