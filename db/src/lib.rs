//! The SierraDB domain.
