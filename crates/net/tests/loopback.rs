//! Nodes on real loopback sockets talking to each other.

use std::time::{Duration, Instant};

use cairn_net::{Event, Multiaddr, NetConfig, Network, PeerId, Protocol, RequestError};
use cairn_wire::Keypair;
use tokio::sync::mpsc;
use tokio::time::timeout;

/// An upper bound on anything a test waits for, so a bug fails the test
/// instead of hanging it. Never an assertion about speed.
const PATIENCE: Duration = Duration::from_secs(30);

fn key(n: u8) -> Keypair {
    Keypair::from_seed([n; 32])
}

fn quic(key: Keypair) -> NetConfig {
    NetConfig {
        listen: vec!["/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap()],
        ..NetConfig::loopback(key)
    }
}

/// `network`'s first listen address, with its peer id appended.
fn contact(network: &Network) -> Multiaddr {
    let addr = network
        .listen_addrs()
        .into_iter()
        .next()
        .expect("a bound address");
    addr.with(Protocol::P2p(network.local_peer_id()))
}

async fn start(config: NetConfig) -> (Network, mpsc::Receiver<Event>) {
    timeout(PATIENCE, Network::start(config))
        .await
        .expect("start in time")
        .expect("start")
}

/// Waits until `events` reports a connection to `peer`, answering nothing.
async fn connected(events: &mut mpsc::Receiver<Event>, peer: PeerId) {
    wait_for(
        events,
        "connected",
        |e| matches!(e, Event::Connected(p) if *p == peer),
    )
    .await;
}

/// Waits until `events` reports something `wanted` accepts, answering
/// nothing.
async fn wait_for(events: &mut mpsc::Receiver<Event>, what: &str, wanted: impl Fn(&Event) -> bool) {
    let wait = async {
        while let Some(event) = events.recv().await {
            if wanted(&event) {
                return;
            }
        }
        panic!("event queue closed before {what}");
    };
    timeout(PATIENCE, wait)
        .await
        .unwrap_or_else(|_| panic!("{what} in time"));
}

/// Answers every request with `prefix` followed by the request.
fn serve(mut events: mpsc::Receiver<Event>, prefix: &'static [u8]) {
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            if let Event::Request { data, reply, .. } = event {
                reply.send([prefix, &data].concat());
            }
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrapped_peers_exchange_requests() {
    let (a, mut a_events) = start(NetConfig::loopback(key(1))).await;
    let (b, b_events) = start(NetConfig {
        bootstrap: vec![contact(&a)],
        ..NetConfig::loopback(key(2))
    })
    .await;
    assert_eq!(a.local_peer_id(), cairn_net::peer_id(&key(1).public()));
    assert_eq!(
        cairn_net::public_key(&b.local_peer_id()),
        Some(key(2).public())
    );
    for addr in b.listen_addrs() {
        assert!(
            matches!(addr.iter().last(), Some(Protocol::Tcp(port)) if port != 0),
            "{addr}"
        );
    }

    // A learns B only because B dialled it.
    connected(&mut a_events, b.local_peer_id()).await;
    serve(b_events, b"b:");
    let response = timeout(PATIENCE, a.request(b.local_peer_id(), b"ping".to_vec())).await;
    assert_eq!(response.unwrap().unwrap(), b"b:ping");
    assert!(a.connected_peers().await.contains(&b.local_peer_id()));
    assert_eq!(a.stats().requests_out, 1);
    assert_eq!(b.stats().requests_in, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nat_traversal_nodes_exchange_requests() {
    // AutoNAT, the relay client and DCUtR are switched on; they must not
    // get in the way of a direct connection.
    let nat = |n| NetConfig {
        nat: true,
        ..NetConfig::loopback(key(n))
    };
    let (a, mut a_events) = start(nat(17)).await;
    let (b, b_events) = start(NetConfig {
        bootstrap: vec![contact(&a)],
        ..nat(18)
    })
    .await;
    connected(&mut a_events, b.local_peer_id()).await;
    serve(b_events, b"nat:");
    let response = timeout(PATIENCE, a.request(b.local_peer_id(), b"ping".to_vec())).await;
    assert_eq!(response.unwrap().unwrap(), b"nat:ping");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_dials_an_added_address() {
    let (a, _a_events) = start(NetConfig::loopback(key(3))).await;
    let (b, b_events) = start(NetConfig::loopback(key(4))).await;
    serve(b_events, b"b:");
    for addr in b.listen_addrs() {
        a.add_address(b.local_peer_id(), addr);
    }
    let response = timeout(PATIENCE, a.request(b.local_peer_id(), b"hi".to_vec())).await;
    assert_eq!(response.unwrap().unwrap(), b"b:hi");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_to_unknown_peer_fails() {
    let (a, _a_events) = start(NetConfig::loopback(key(5))).await;
    let stranger = cairn_net::peer_id(&key(6).public());
    let response = timeout(PATIENCE, a.request(stranger, b"hi".to_vec())).await;
    assert_eq!(response.unwrap(), Err(RequestError::Unreachable));
    assert_eq!(a.stats().outbound_failures, 1);
}

/// Forwards gossip to a channel, accepting every message.
fn accept_gossip(
    network: Network,
    mut events: mpsc::Receiver<Event>,
) -> mpsc::UnboundedReceiver<(Option<PeerId>, String, Vec<u8>)> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            if let Event::Gossip {
                id,
                from,
                author,
                topic,
                data,
            } = event
            {
                network.report(id, from, true);
                if tx.send((author, topic, data)).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_reaches_every_subscriber() {
    const TOPIC: &str = "market/bids";
    let config = |n, bootstrap: Vec<Multiaddr>| NetConfig {
        topics: vec![TOPIC.to_string()],
        bootstrap,
        ..NetConfig::loopback(key(n))
    };
    let (a, _a_events) = start(config(7, vec![])).await;
    let (b, b_events) = start(config(8, vec![contact(&a)])).await;
    let (c, c_events) = start(config(9, vec![contact(&a)])).await;
    let mut b_gossip = accept_gossip(b.clone(), b_events);
    let mut c_gossip = accept_gossip(c.clone(), c_events);

    // Publishing fails until A has learnt that B and C subscribe, so
    // publish a fresh message until one reaches both.
    let deadline = Instant::now() + PATIENCE;
    let (mut b_seen, mut c_seen) = (Vec::new(), Vec::new());
    let mut attempt = 0u32;
    let delivered = 'publish: loop {
        attempt += 1;
        assert!(Instant::now() < deadline, "no message reached both B and C");
        a.publish(TOPIC, format!("bid {attempt}").into_bytes());
        tokio::time::sleep(Duration::from_millis(200)).await;
        while let Ok(m) = b_gossip.try_recv() {
            b_seen.push(m);
        }
        while let Ok(m) = c_gossip.try_recv() {
            c_seen.push(m);
        }
        for m in &b_seen {
            if c_seen.contains(m) {
                break 'publish m.clone();
            }
        }
    };
    let (author, topic, data) = delivered;
    assert_eq!(author, Some(a.local_peer_id()));
    assert_eq!(topic, TOPIC);
    assert!(data.starts_with(b"bid "));
    // Nothing arrives twice, however it was forwarded.
    for seen in [&b_seen, &c_seen] {
        for (i, m) in seen.iter().enumerate() {
            assert!(!seen[i + 1..].contains(m), "duplicate delivery of {m:?}");
        }
    }
    assert!(a.stats().published >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_gossip_lowers_the_senders_score() {
    const TOPIC: &str = "market/offers";
    let config = |n, bootstrap: Vec<Multiaddr>| NetConfig {
        topics: vec![TOPIC.to_string()],
        bootstrap,
        ..NetConfig::loopback(key(n))
    };
    let (a, _a_events) = start(config(22, vec![])).await;
    let (b, mut b_events) = start(config(23, vec![contact(&a)])).await;
    let wait = async {
        for attempt in 0u32.. {
            a.publish(TOPIC, format!("forged {attempt}").into_bytes());
            let next = timeout(Duration::from_millis(200), async {
                loop {
                    if let Some(Event::Gossip { id, from, .. }) = b_events.recv().await {
                        return (id, from);
                    }
                }
            });
            if let Ok(message) = next.await {
                return message;
            }
        }
        unreachable!()
    };
    let (id, from) = timeout(PATIENCE, wait).await.expect("gossip in time");
    assert_eq!(from, a.local_peer_id());
    let before = b.gossip_score(from).await.expect("A is a gossip peer of B");
    assert!(before >= 0.0, "{before}");
    b.report(id, from, false);
    let after = b.gossip_score(from).await.expect("A is a gossip peer of B");
    assert!(after <= before - 10.0, "score {before} -> {after}");
    assert_eq!(b.stats().gossip_invalid, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_messages_are_dropped_and_counted() {
    let (a, _a_events) = start(NetConfig {
        response_bytes_max: 1000,
        ..NetConfig::loopback(key(10))
    })
    .await;
    let (b, b_events) = start(NetConfig {
        request_bytes_max: 1000,
        ..NetConfig::loopback(key(11))
    })
    .await;
    // B answers a request of n bytes with n + 2 bytes.
    serve(b_events, b"b:");
    for addr in b.listen_addrs() {
        a.add_address(b.local_peer_id(), addr);
    }
    let request = |len: usize| timeout(PATIENCE, a.request(b.local_peer_id(), vec![7; len]));

    let response = request(1001).await.unwrap();
    assert!(
        matches!(response, Err(RequestError::Stream(_))),
        "{response:?}"
    );
    assert_eq!(b.stats().dropped_oversized, 1);
    assert_eq!(b.stats().requests_in, 0);

    // B still serves requests within its limit, on a fresh stream.
    assert_eq!(request(998).await.unwrap().unwrap().len(), 1000);

    // A refuses a response over its own limit.
    let response = request(999).await.unwrap();
    assert!(
        matches!(response, Err(RequestError::Stream(_))),
        "{response:?}"
    );
    assert_eq!(a.stats().dropped_oversized, 1);
    assert_eq!(request(10).await.unwrap().unwrap().len(), 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_request_times_out() {
    let (a, _a_events) = start(NetConfig {
        request_timeout: Duration::from_millis(500),
        ..NetConfig::loopback(key(12))
    })
    .await;
    let (b, mut b_events) = start(NetConfig::loopback(key(13))).await;
    for addr in b.listen_addrs() {
        a.add_address(b.local_peer_id(), addr);
    }
    // B's application holds the first request without answering and drops
    // the second's responder.
    let (held_tx, mut held_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut n = 0;
        while let Some(event) = b_events.recv().await {
            if let Event::Request { reply, .. } = event {
                n += 1;
                if n == 1 {
                    held_tx.send(reply).unwrap();
                }
            }
        }
    });

    let response = timeout(PATIENCE, a.request(b.local_peer_id(), b"wait".to_vec())).await;
    assert_eq!(response.unwrap(), Err(RequestError::Timeout));
    let _held = held_rx.recv().await.expect("B saw the request");

    let response = timeout(PATIENCE, a.request(b.local_peer_id(), b"drop".to_vec())).await;
    let response = response.unwrap();
    assert!(
        matches!(response, Err(RequestError::Stream(_))),
        "{response:?}"
    );
    assert_eq!(a.stats().outbound_failures, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_peers_exchange_requests() {
    let (a, mut a_events) = start(quic(key(14))).await;
    assert!(
        a.listen_addrs()
            .iter()
            .all(|addr| addr.iter().any(|p| p == Protocol::QuicV1)),
        "{:?}",
        a.listen_addrs()
    );
    let (b, b_events) = start(NetConfig {
        bootstrap: vec![contact(&a)],
        ..quic(key(15))
    })
    .await;
    connected(&mut a_events, b.local_peer_id()).await;
    serve(b_events, b"quic:");
    let response = timeout(PATIENCE, a.request(b.local_peer_id(), b"ping".to_vec())).await;
    assert_eq!(response.unwrap().unwrap(), b"quic:ping");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_stops_when_handles_are_dropped() {
    let (a, mut a_events) = start(NetConfig::loopback(key(16))).await;
    drop(a);
    // The task ends and drops the event sender, closing the queue.
    let closed = timeout(PATIENCE, async { while a_events.recv().await.is_some() {} }).await;
    assert!(closed.is_ok());
}

/// Throughput of 4 MiB responses on loopback. Run with
/// `cargo test -p cairn-net --test loopback -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark"]
async fn bench_4mib_responses() {
    const CHUNK: usize = 4 << 20;
    const REQUESTS: usize = 64;
    for (name, config) in [
        ("tcp", NetConfig::loopback as fn(Keypair) -> NetConfig),
        ("quic", quic),
    ] {
        let (a, _a_events) = start(config(key(20))).await;
        let (b, mut b_events) = start(config(key(21))).await;
        let chunk = vec![0x5a; CHUNK];
        tokio::spawn(async move {
            while let Some(event) = b_events.recv().await {
                if let Event::Request { data, reply, .. } = event {
                    // A one-byte request asks for a chunk; others are echoed.
                    reply.send(if data.len() == 1 { chunk.clone() } else { data });
                }
            }
        });
        for addr in b.listen_addrs() {
            a.add_address(b.local_peer_id(), addr);
        }
        let peer = b.local_peer_id();
        a.request(peer, vec![]).await.unwrap(); // connect and warm up
        for concurrency in [1, 4, 16] {
            let started = Instant::now();
            let mut tasks = Vec::new();
            for _ in 0..concurrency {
                let a = a.clone();
                tasks.push(tokio::spawn(async move {
                    for _ in 0..REQUESTS / concurrency {
                        assert_eq!(a.request(peer, vec![1]).await.unwrap().len(), CHUNK);
                    }
                }));
            }
            for task in tasks {
                task.await.unwrap();
            }
            let elapsed = started.elapsed().as_secs_f64();
            let mb = (REQUESTS * CHUNK) as f64 / 1e6;
            println!(
                "{name} concurrency {concurrency:2}: {:.0} MB/s",
                mb / elapsed
            );
        }
        // Small requests: round trips per second, 64 in flight.
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let a = a.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..100 {
                    a.request(peer, vec![1; 64]).await.unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let rate = 6400.0 / started.elapsed().as_secs_f64();
        println!("{name} 64-byte requests, 64 in flight: {rate:.0} round trips/s");
    }
}

/// A node whose bootstrap peer restarts (same key, same address) finds it
/// again by itself: a provider whose requester restarted used to stay cut
/// off from its orders until it restarted too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_bootstrap_peer_is_dialled_again() {
    let (a, mut a_events) = start(NetConfig::loopback(key(1))).await;
    let a_contact = contact(&a);
    let a_peer = a.local_peer_id();
    let (b, mut b_events) = start(NetConfig {
        bootstrap: vec![a_contact.clone()],
        ..NetConfig::loopback(key(2))
    })
    .await;
    connected(&mut a_events, b.local_peer_id()).await;
    // A stops: dropping every handle ends its task and closes its
    // listeners and connections. B sees it go before A comes back.
    drop(a);
    drop(a_events);
    wait_for(
        &mut b_events,
        "B sees A go",
        |e| matches!(e, Event::Disconnected(p) if *p == a_peer),
    )
    .await;
    let mut listen = a_contact.clone();
    listen.pop();
    // Its port may take a moment to be free again.
    let started = Instant::now();
    let (_a, mut a_events) = loop {
        let config = NetConfig {
            listen: vec![listen.clone()],
            ..NetConfig::loopback(key(1))
        };
        match Network::start(config).await {
            Ok(started) => break started,
            Err(e) => {
                assert!(started.elapsed() < PATIENCE, "A cannot listen again: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    connected(&mut a_events, b.local_peer_id()).await;
}
