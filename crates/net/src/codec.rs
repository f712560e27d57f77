//! The request-response wire format: one length-prefixed frame each way.
//!
//! A frame is a big-endian `u32` length followed by that many bytes. The
//! reader checks the announced length against its limit before allocating or
//! reading anything, so a peer cannot make this node buffer more than the
//! limit, and reads the body straight into a buffer of the announced size.

use std::io;
use std::sync::Arc;

use futures::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use libp2p::StreamProtocol;
use libp2p::request_response;

use crate::stats::{Counters, bump};

/// The protocol name negotiated for requests. Its version changes with the
/// encoding of the market's messages (3: a task's own fuel, and the terms'
/// least; 4: a task's own inputs; 5: the receipt opens the commitment),
/// so nodes that could not read each
/// other do not connect.
pub const RPC_PROTOCOL: StreamProtocol = StreamProtocol::new("/cairn/rpc/5");

/// Length-prefixed opaque bytes, with separate limits for the two directions.
#[derive(Clone)]
pub(crate) struct RpcCodec {
    pub request_bytes_max: usize,
    pub response_bytes_max: usize,
    pub counters: Arc<Counters>,
}

impl RpcCodec {
    async fn read_frame<T>(&self, io: &mut T, bytes_max: usize) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        let mut prefix = [0u8; 4];
        let mut filled = 0;
        while filled < prefix.len() {
            let n = io.read(&mut prefix[filled..]).await?;
            if n == 0 {
                // A stream closed before any byte is a peer that chose not to
                // answer (or hung up), not a malformed frame.
                if filled > 0 {
                    bump(&self.counters.dropped_malformed);
                }
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            filled += n;
        }
        let len = u32::from_be_bytes(prefix) as usize;
        if len > bytes_max {
            bump(&self.counters.dropped_oversized);
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("frame of {len} bytes exceeds the limit of {bytes_max}"),
            ));
        }
        // `vec![0; len]` allocates zeroed memory, which for large frames comes
        // straight from fresh pages; the body is then read in place.
        let mut frame = vec![0u8; len];
        match io.read_exact(&mut frame).await {
            Ok(()) => Ok(frame),
            Err(e) => {
                if e.kind() == io::ErrorKind::UnexpectedEof {
                    bump(&self.counters.dropped_malformed);
                }
                Err(e)
            }
        }
    }
}

async fn write_frame<T>(io: &mut T, frame: &[u8]) -> io::Result<()>
where
    T: AsyncWrite + Unpin + Send,
{
    let len = u32::try_from(frame.len()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("frame of {} bytes does not fit a u32 length", frame.len()),
        )
    })?;
    io.write_all(&len.to_be_bytes()).await?;
    io.write_all(frame).await?;
    io.flush().await
}

impl request_response::Codec for RpcCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        self.read_frame(io, self.request_bytes_max).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        self.read_frame(io, self.response_bytes_max).await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &request).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        response: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &response).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::io::Cursor;
    use request_response::Codec as _;

    fn codec(max: usize) -> RpcCodec {
        RpcCodec {
            request_bytes_max: max,
            response_bytes_max: max,
            counters: Arc::default(),
        }
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        futures::executor::block_on(f)
    }

    #[test]
    fn frame_round_trips() {
        let mut c = codec(16);
        let mut wire = Cursor::new(Vec::new());
        block_on(c.write_request(&RPC_PROTOCOL, &mut wire, b"hello".to_vec())).unwrap();
        assert_eq!(wire.get_ref()[..4], 5u32.to_be_bytes());
        let mut wire = Cursor::new(wire.into_inner());
        let back = block_on(c.read_request(&RPC_PROTOCOL, &mut wire)).unwrap();
        assert_eq!(back, b"hello");
    }

    #[test]
    fn oversized_frame_is_refused_before_reading_its_body() {
        let c = codec(4);
        // Announces 5 bytes but carries none: the limit must trip first,
        // otherwise this would be counted as truncated.
        let mut wire = Cursor::new(5u32.to_be_bytes().to_vec());
        let err = block_on(c.read_frame(&mut wire, 4)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let stats = c.counters.snapshot();
        assert_eq!((stats.dropped_oversized, stats.dropped_malformed), (1, 0));
    }

    #[test]
    fn frame_at_the_limit_is_accepted() {
        let c = codec(4);
        let mut bytes = 4u32.to_be_bytes().to_vec();
        bytes.extend_from_slice(b"abcd");
        let back = block_on(c.read_frame(&mut Cursor::new(bytes), 4)).unwrap();
        assert_eq!(back, b"abcd");
    }

    #[test]
    fn truncated_frames_are_counted_as_malformed() {
        let c = codec(16);
        let mut short_body = 8u32.to_be_bytes().to_vec();
        short_body.extend_from_slice(b"abc");
        assert!(block_on(c.read_frame(&mut Cursor::new(short_body), 16)).is_err());
        assert!(block_on(c.read_frame(&mut Cursor::new(vec![0, 0]), 16)).is_err());
        assert_eq!(c.counters.snapshot().dropped_malformed, 2);
    }

    #[test]
    fn empty_stream_is_not_malformed() {
        let c = codec(16);
        let err = block_on(c.read_frame(&mut Cursor::new(Vec::new()), 16)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(c.counters.snapshot(), Default::default());
    }
}
