//! Generic TCP fallback (being written).
