//! `TokioListener` on real TCP (127.0.0.1, port 0), serving RESP through the codec and
//! checked with raw bytes.

use bytes::BytesMut;
use net::resp3::{Frame, Limits, Protocol, decode, encode};
use net::{Listener, TokioListener};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn accepts_with_nodelay_and_serves_resp() {
    let mut listener = TokioListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    assert_ne!(addr.port(), 0);

    let mut client = TcpStream::connect(addr).await.unwrap();
    let (mut conn, peer) = listener.accept().await.unwrap();
    assert_eq!(peer, client.local_addr().unwrap());
    assert!(conn.nodelay().unwrap());

    // Two pipelined requests, the second an inline command, split mid-frame.
    client.write_all(b"*1\r\n$4\r\nPI").await.unwrap();
    client.write_all(b"NG\r\nPING\r\n").await.unwrap();

    let limits = Limits::default();
    let mut buf = BytesMut::new();
    let mut replies = BytesMut::new();
    let mut served = 0;
    while served < 2 {
        if let Some(request) = decode(&mut buf, &limits).unwrap() {
            assert_eq!(request, Frame::array(vec![Frame::bulk("PING")]));
            encode(&Frame::simple("PONG"), Protocol::Resp2, &mut replies);
            served += 1;
        } else {
            assert_ne!(conn.read_buf(&mut buf).await.unwrap(), 0, "client hung up");
        }
    }
    conn.write_all(&replies).await.unwrap();

    let mut reply = [0; 14];
    client.read_exact(&mut reply).await.unwrap();
    assert_eq!(&reply, b"+PONG\r\n+PONG\r\n");
}
