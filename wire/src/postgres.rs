//! PostgreSQL v3 wire protocol (being written).
