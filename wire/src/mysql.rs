//! MySQL client/server protocol (being written).
