//! The I/O edge (feature `client`): an unauthenticated endpoint-mapper client over tokio TCP.
//! Everything protocol-related is delegated to the pure modules.

use std::net::SocketAddr;

use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{
    decode_pdu, fragment, Bind, ContextResultCode, EptMapRequest, EptMapResponse, FaultStatus, Pdu,
    PduBody, PduHeader, PresentationContext, Reassembler, Request, RpcError, SyntaxId, EPM,
    EPT_MAP_OPNUM, HEADER_LEN, NDR20,
};

/// Fragment size we offer; the usual Windows value.
const MAX_FRAG: u16 = 4280;
/// An `ept_map` answer is a few hundred bytes.
const MAX_RESPONSE: usize = 64 * 1024;

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Rpc(#[from] RpcError),
    #[error("bind rejected: {0}")]
    BindRejected(String),
    #[error("call failed with fault {0}")]
    Fault(FaultStatus),
    #[error("endpoint mapper status {0:#010x}")]
    EpmStatus(u32),
    #[error("no ncacn_ip_tcp endpoint registered for the interface")]
    NoTcpEndpoint,
}

/// A connection that reads whole PDUs off a TCP stream.
#[derive(Debug)]
pub struct Connection {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Connection {
    pub async fn connect(addr: SocketAddr) -> Result<Self, ClientError> {
        Ok(Self::new(TcpStream::connect(addr).await?))
    }

    /// Wraps an established stream (either side of the connection).
    pub fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    pub async fn send(&mut self, pdu: &Pdu) -> Result<(), ClientError> {
        self.stream.write_all(&pdu.encode()?).await?;
        Ok(())
    }

    /// Sends an already encoded PDU (e.g. one sealed by [`crate::encode_sealed`]).
    pub async fn send_bytes(&mut self, pdu: &[u8]) -> Result<(), ClientError> {
        self.stream.write_all(pdu).await?;
        Ok(())
    }

    /// Reads the next PDU (a single fragment).
    pub async fn recv(&mut self) -> Result<Pdu, ClientError> {
        let frame = self.recv_frame().await?;
        Ok(decode_pdu(&frame)?.0)
    }

    /// Reads the next fragment as raw bytes, for a security provider to unseal
    /// ([`crate::decode_sealed`]). Only the 16-byte header is parsed here; `frag_length` bounds
    /// what is buffered.
    pub async fn recv_frame(&mut self) -> Result<Vec<u8>, ClientError> {
        loop {
            match PduHeader::decode(&self.buf) {
                Ok(header) => {
                    let len = usize::from(header.frag_length);
                    if len < HEADER_LEN {
                        return Err(RpcError::Malformed(format!(
                            "frag_length {len} is shorter than the header"
                        ))
                        .into());
                    }
                    if self.buf.len() >= len {
                        return Ok(self.buf.drain(..len).collect());
                    }
                }
                Err(e) if e.is_incomplete() => {}
                Err(e) => return Err(e.into()),
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
            }
        }
    }
}

/// Binds to the endpoint mapper at `epm_addr` and asks which TCP port serves `interface`.
pub async fn ept_map_tcp_port(
    epm_addr: SocketAddr,
    interface: SyntaxId,
) -> Result<u16, ClientError> {
    let mut conn = Connection::connect(epm_addr).await?;
    let bind = Bind {
        max_xmit_frag: MAX_FRAG,
        max_recv_frag: MAX_FRAG,
        assoc_group_id: 0,
        contexts: vec![PresentationContext {
            context_id: 0,
            abstract_syntax: EPM,
            transfer_syntaxes: vec![NDR20],
        }],
    };
    conn.send(&Pdu::new(1, PduBody::Bind(bind))).await?;
    let max_xmit = match conn.recv().await?.body {
        PduBody::BindAck(ack) => {
            match ack.results.first() {
                Some(r) if r.result == ContextResultCode::ACCEPTANCE => {}
                other => return Err(ClientError::BindRejected(format!("{other:?}"))),
            }
            ack.max_recv_frag.min(MAX_FRAG)
        }
        PduBody::BindNak(nak) => {
            return Err(ClientError::BindRejected(format!(
                "reason {}",
                nak.reject_reason
            )))
        }
        other => {
            return Err(RpcError::Unexpected(format!("{:?} to bind", other.packet_type())).into())
        }
    };

    let stub = EptMapRequest::new(interface).encode()?;
    let request = PduBody::Request(Request {
        alloc_hint: 0,
        context_id: 0,
        opnum: EPT_MAP_OPNUM,
        object: None,
        stub,
    });
    for pdu in fragment(2, &request, max_xmit, 0)? {
        conn.send(&pdu).await?;
    }

    let mut reassembler = Reassembler::new(MAX_RESPONSE);
    let reply = loop {
        if let Some(pdu) = reassembler.push(conn.recv().await?)? {
            break pdu;
        }
    };
    let stub = match reply.body {
        PduBody::Response(r) => r.stub,
        PduBody::Fault(f) => return Err(ClientError::Fault(f.status)),
        other => {
            return Err(
                RpcError::Unexpected(format!("{:?} to request", other.packet_type())).into(),
            )
        }
    };
    let response = EptMapResponse::decode(&stub)?;
    if response.status != 0 {
        return Err(ClientError::EpmStatus(response.status));
    }
    response
        .tcp_ports()?
        .into_iter()
        .next()
        .ok_or(ClientError::NoTcpEndpoint)
}
