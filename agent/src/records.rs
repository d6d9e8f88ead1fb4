//! Decoding of ring-buffer records into the shared `#[repr(C)]` types (sans-IO).

use kreplay_agent_ebpf::{ControlEvent, DataHeader};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("record of {got} bytes is shorter than its {need}-byte header")]
    Short { got: usize, need: usize },
    #[error("record announces {announced} payload bytes but carries {carried}")]
    Length { announced: usize, carried: usize },
}

/// One data record: header plus the payload bytes that follow it.
pub fn decode_data(bytes: &[u8]) -> Result<(DataHeader, &[u8]), RecordError> {
    let need = size_of::<DataHeader>();
    if bytes.len() < need {
        return Err(RecordError::Short {
            got: bytes.len(),
            need,
        });
    }
    // SAFETY: length checked above; DataHeader is plain old data, read unaligned.
    let header = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<DataHeader>()) };
    let payload = &bytes[need..];
    let announced = header.len as usize;
    if payload.len() < announced {
        return Err(RecordError::Length {
            announced,
            carried: payload.len(),
        });
    }
    Ok((header, &payload[..announced]))
}

pub fn decode_control(bytes: &[u8]) -> Result<ControlEvent, RecordError> {
    let need = size_of::<ControlEvent>();
    if bytes.len() < need {
        return Err(RecordError::Short {
            got: bytes.len(),
            need,
        });
    }
    // SAFETY: length checked above; ControlEvent is plain old data, read unaligned.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<ControlEvent>()) })
}

/// Renders a captured `sockaddr` as `ip:port` (empty when unknown).
pub fn format_addr(addr: &kreplay_agent_ebpf::SockAddr) -> String {
    let port = u16::from_be(addr.port_be);
    match addr.family {
        2 => {
            let ip =
                std::net::Ipv4Addr::new(addr.addr[0], addr.addr[1], addr.addr[2], addr.addr[3]);
            format!("{ip}:{port}")
        }
        10 => format!("[{}]:{port}", std::net::Ipv6Addr::from(addr.addr)),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn as_bytes<T>(value: &T) -> Vec<u8> {
        // SAFETY: test helper over repr(C) plain data.
        unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()) }
            .to_vec()
    }

    #[test]
    fn data_record_round_trips_and_rejects_short_input() {
        let header = DataHeader {
            pos: 42,
            len: 3,
            fd: 7,
            ..Default::default()
        };
        let mut bytes = as_bytes(&header);
        bytes.extend_from_slice(b"abcXX"); // ring records are padded: extra bytes are ignored
        let (decoded, payload) = decode_data(&bytes).unwrap();
        assert_eq!((decoded.pos, decoded.fd), (42, 7));
        assert_eq!(payload, b"abc");
        assert!(matches!(
            decode_data(&bytes[..10]),
            Err(RecordError::Short { .. })
        ));
        let mut lying = as_bytes(&DataHeader {
            len: 100,
            ..Default::default()
        });
        lying.extend_from_slice(b"abc");
        assert!(matches!(
            decode_data(&lying),
            Err(RecordError::Length {
                announced: 100,
                carried: 3
            })
        ));
    }

    #[test]
    fn control_and_addresses() {
        let mut event = ControlEvent {
            fd: 9,
            kind: 1,
            ..Default::default()
        };
        event.peer.family = 2;
        event.peer.port_be = 8080u16.to_be();
        event.peer.addr[..4].copy_from_slice(&[127, 0, 0, 1]);
        let decoded = decode_control(&as_bytes(&event)).unwrap();
        assert_eq!(decoded.fd, 9);
        assert_eq!(format_addr(&decoded.peer), "127.0.0.1:8080");
        assert!(decode_control(&[0; 4]).is_err());
    }
}
