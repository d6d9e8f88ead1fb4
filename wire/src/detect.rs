//! Protocol detection from the first bytes (being written).
