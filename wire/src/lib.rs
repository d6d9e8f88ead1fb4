//! Sans-IO protocol parsers: bytes in, values out.
