//! Connection phase: the server's greeting (Handshake v10) and the client's SSLRequest and
//! HandshakeResponse41.

use super::codec::{Reader, lossy};
use super::{b64, caps, malformed};
use crate::dependency::DependencyError;

/// Connect attributes that differ from one client process or host to the next; left out of the
/// fields so a fresh process replaying the same code still matches.
const VOLATILE_ATTRS: [&str; 4] = ["_pid", "_thread", "_source_host", "_connection_id"];

/// What the parser keeps from the greeting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Greeting {
    pub server_version: String,
    pub capabilities: u32,
    pub auth_plugin: String,
}

pub(super) fn parse_greeting(payload: &[u8]) -> Result<Greeting, DependencyError> {
    let mut r = Reader::new(payload);
    let protocol = r.u8("greeting protocol version")?;
    if protocol != 10 {
        return Err(malformed(format!(
            "greeting with protocol version {protocol} (only 10 is supported)"
        )));
    }
    let server_version = lossy(r.nul_bytes("server version")?);
    r.u32("connection id")?;
    r.take(8, "auth-plugin-data part 1")?;
    r.u8("greeting filler")?;
    let mut capabilities = u32::from(r.u16("capability flags")?);
    let mut auth_plugin = String::new();
    // Servers older than 4.1 stop here.
    if !r.is_empty() {
        r.u8("character set")?;
        r.u16("status flags")?;
        capabilities |= u32::from(r.u16("upper capability flags")?) << 16;
        let data_len = r.u8("auth-plugin-data length")?;
        r.take(10, "greeting reserved bytes")?;
        if capabilities & caps::SECURE_CONNECTION != 0 {
            let part2 = usize::from(data_len).saturating_sub(8).max(13);
            // Some servers send the NUL-less 12-byte form; take what is there.
            r.take(part2.min(r.remaining()), "auth-plugin-data part 2")?;
        }
        if capabilities & caps::PLUGIN_AUTH != 0 {
            auth_plugin = lossy(r.nul_or_rest());
        }
    }
    Ok(Greeting {
        server_version,
        capabilities,
        auth_plugin,
    })
}

/// A 32-byte packet with CLIENT_SSL: the client asks to switch to TLS before it authenticates.
pub(super) fn is_ssl_request(payload: &[u8]) -> bool {
    payload.len() == 32
        && Reader::new(payload)
            .u32("")
            .is_ok_and(|c| c & caps::SSL != 0)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct HandshakeResponse {
    pub capabilities: u32,
    pub user: String,
    pub auth_response: Vec<u8>,
    pub database: Option<String>,
    pub auth_plugin: Option<String>,
    /// Connect attributes in the order sent.
    pub attrs: Vec<(String, String)>,
}

pub(super) fn parse_handshake_response(
    payload: &[u8],
) -> Result<HandshakeResponse, DependencyError> {
    let mut r = Reader::new(payload);
    let capabilities = r.u32("client capability flags")?;
    if capabilities & caps::PROTOCOL_41 == 0 {
        return Err(malformed(
            "pre-4.1 handshake response (HandshakeResponse320) is not supported",
        ));
    }
    r.u32("max packet size")?;
    r.u8("character set")?;
    r.take(23, "handshake response filler")?;
    let user = lossy(r.nul_bytes("user name")?);
    let auth_response = if capabilities & caps::PLUGIN_AUTH_LENENC_CLIENT_DATA != 0 {
        r.lenenc_bytes("auth response")?
    } else if capabilities & caps::SECURE_CONNECTION != 0 {
        let len = r.u8("auth response length")?;
        r.take(usize::from(len), "auth response")?
    } else {
        r.nul_bytes("auth response")?
    }
    .to_vec();
    // The optional fields at the end are missing in some clients' packets despite the flag.
    let database = (capabilities & caps::CONNECT_WITH_DB != 0 && !r.is_empty())
        .then(|| lossy(r.nul_or_rest()));
    let auth_plugin =
        (capabilities & caps::PLUGIN_AUTH != 0 && !r.is_empty()).then(|| lossy(r.nul_or_rest()));
    let mut attrs = Vec::new();
    if capabilities & caps::CONNECT_ATTRS != 0 && !r.is_empty() {
        let len = r.lenenc("connect attributes length")?;
        let len = usize::try_from(len).map_err(|_| malformed("connect attributes too long"))?;
        let mut block = Reader::new(r.take(len, "connect attributes")?);
        while !block.is_empty() {
            let key = lossy(block.lenenc_bytes("connect attribute name")?);
            let value = lossy(block.lenenc_bytes("connect attribute value")?);
            attrs.push((key, value));
        }
    }
    Ok(HandshakeResponse {
        capabilities,
        user,
        auth_response,
        database,
        auth_plugin,
        attrs,
    })
}

impl HandshakeResponse {
    /// Match fields: who connects to what, and how; attributes sorted, volatile ones left out.
    pub(super) fn fields(&self) -> Vec<(String, String)> {
        let mut fields = vec![
            ("type".to_owned(), "handshake_response".to_owned()),
            ("user".to_owned(), self.user.clone()),
        ];
        if let Some(database) = &self.database {
            fields.push(("database".to_owned(), database.clone()));
        }
        if let Some(plugin) = &self.auth_plugin {
            fields.push(("auth_plugin".to_owned(), plugin.clone()));
        }
        fields.push(("auth_response".to_owned(), b64(&self.auth_response)));
        let mut attrs: Vec<(String, String)> = self
            .attrs
            .iter()
            .filter(|(key, _)| !VOLATILE_ATTRS.contains(&key.as_str()))
            .map(|(key, value)| (format!("attr.{key}"), value.clone()))
            .collect();
        attrs.sort();
        fields.extend(attrs);
        fields
    }

    pub(super) fn summary(&self) -> String {
        let mut summary = format!("HandshakeResponse41 user={}", self.user);
        if let Some(database) = &self.database {
            summary.push_str(&format!(" db={database}"));
        }
        if let Some(plugin) = &self.auth_plugin {
            summary.push_str(&format!(" plugin={plugin}"));
        }
        summary
    }
}
