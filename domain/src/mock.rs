//! Mocks (being written).
