//! The pool against a real downstream: Postfix's `smtp-sink` on 127.0.0.1.
//!
//! smtp-sink must be installed (tests/run.sh installs Postfix); without it
//! these tests fail rather than pass silently. Its `-f`/`-r`/`-Q`/`-q`
//! options make it refuse or hang up at a chosen command, so the 4xx/5xx and
//! broken-connection paths run against a real server, not only a fake one.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::LocalExecutor;
use portcullis::message::BodyType;
use portcullis::pool::{OutboundEnvelope, Pool, PoolConfig, RecipientOutcome};

const SMTP_SINK: &str = "/usr/sbin/smtp-sink";

/// A running smtp-sink with its counters (`-c`) in a file and, optionally,
/// every message dumped into `dir` (`-d`).
struct Sink {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
    /// Sessions smtp-sink had counted once it was up (our readiness probe).
    sessions_before: u64,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

impl Sink {
    fn start(name: &str, options: &[&str]) -> Sink {
        Sink::start_with(name, options, true)
    }

    fn start_with(name: &str, options: &[&str], dump: bool) -> Sink {
        assert!(
            std::path::Path::new(SMTP_SINK).exists(),
            "{SMTP_SINK} is missing: install Postfix (apt-get install -y postfix); these tests need a real downstream"
        );
        let dir =
            std::env::temp_dir().join(format!("portcullis-sink-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut cmd = Command::new(SMTP_SINK);
        if is_root() {
            cmd.args(["-u", "root"]);
        }
        let counters = std::fs::File::create(dir.join("counters")).unwrap();
        cmd.arg("-c");
        if dump {
            cmd.arg("-d").arg(dir.join("msg."));
        }
        cmd.args(options)
            .arg(format!("127.0.0.1:{port}"))
            .arg("100");
        let child = cmd
            .stdout(counters)
            .stderr(Stdio::null())
            .spawn()
            .expect("start smtp-sink");
        let mut sink = Sink {
            child,
            addr,
            dir,
            sessions_before: 0,
        };
        sink.wait_until_listening();
        sink
    }

    /// Connect until smtp-sink answers; that probe is one session, so the
    /// count is taken after it.
    fn wait_until_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if TcpStream::connect(self.addr).is_ok() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "smtp-sink did not start listening on {}",
                self.addr
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.sessions_before = self.wait_for(|c| c.0 >= 1).0;
    }

    /// The last "sess=N quit=N mesg=N" line smtp-sink printed.
    fn counters(&self) -> (u64, u64, u64) {
        let text = std::fs::read_to_string(self.dir.join("counters")).unwrap_or_default();
        let Some(last) = text.split('\r').rev().find(|s| s.starts_with("sess=")) else {
            return (0, 0, 0);
        };
        let mut n = last
            .split_whitespace()
            .map(|kv| kv.split('=').nth(1).unwrap().parse::<u64>().unwrap());
        (n.next().unwrap(), n.next().unwrap(), n.next().unwrap())
    }

    fn wait_for(&self, done: impl Fn((u64, u64, u64)) -> bool) -> (u64, u64, u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let c = self.counters();
            if done(c) || Instant::now() > deadline {
                return c;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The messages smtp-sink dumped, each as (MAIL args, body as received).
    /// smtp-sink writes lines with LF and a blank line after each message.
    fn dumped(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir).unwrap() {
            let path = entry.unwrap().path();
            if !path
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("msg.")
            {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let mail = text
                .lines()
                .find_map(|l| l.strip_prefix("X-Mail-Args: "))
                .unwrap_or("")
                .to_string();
            // The sink's own headers end with a three-line Received header.
            let received = text.find("\nReceived: ").expect("Received header");
            let mut rest = &text[received + 1..];
            for _ in 0..3 {
                rest = &rest[rest.find('\n').unwrap() + 1..];
            }
            out.push((mail, rest.to_string()));
        }
        out
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn config() -> PoolConfig {
    PoolConfig {
        helo_name: "relay.portcullis.test".into(),
        connect_timeout: Duration::from_secs(5),
        greeting_timeout: Duration::from_secs(5),
        command_timeout: Duration::from_secs(5),
        data_block_timeout: Duration::from_secs(5),
        data_termination_timeout: Duration::from_secs(5),
        connections_per_host_max: 2,
        idle_timeout: Duration::from_secs(30),
        messages_per_connection_max: 1000,
    }
}

fn envelope(recipients: &[&str]) -> OutboundEnvelope {
    OutboundEnvelope {
        mail_from: "sender@src.test".into(),
        recipients: recipients.iter().map(|r| r.to_string()).collect(),
        body_type: BodyType::SevenBit,
        smtputf8: false,
        ..Default::default()
    }
}

const BODY: &[u8] = b"Subject: dots\r\n\r\n.leading dot\r\n..two dots\r\n.\r\nend\r\n";

fn run<T>(f: impl std::future::Future<Output = T>) -> T {
    LocalExecutor::default().run(f)
}

fn code_of(outcome: &RecipientOutcome) -> (char, u16) {
    match outcome {
        RecipientOutcome::Delivered(r) => ('D', r.code),
        RecipientOutcome::Deferred(r) => ('T', r.code),
        RecipientOutcome::Failed(r) => ('F', r.code),
    }
}

#[test]
fn body_arrives_unchanged_through_dot_stuffing() {
    let sink = Sink::start("body", &[]);
    let outcomes = run(async {
        let pool = Pool::new(config());
        let mut env = envelope(&["a@dst.test", "b@dst.test"]);
        env.body_type = BodyType::EightBitMime;
        let first = pool.send(sink.addr, &env, BODY).await.unwrap();
        let second = pool
            .send(sink.addr, &envelope(&["c@dst.test"]), b"no final newline")
            .await
            .unwrap();
        pool.close_idle().await;
        (first, second)
    });
    assert_eq!(
        outcomes.0.iter().map(code_of).collect::<Vec<_>>(),
        vec![('D', 250), ('D', 250)]
    );
    assert_eq!(
        outcomes.1.iter().map(code_of).collect::<Vec<_>>(),
        vec![('D', 250)]
    );
    sink.wait_for(|c| c.2 >= 2);
    let mut dumped = sink.dumped();
    dumped.sort_by_key(|(_, body)| body.len());
    assert_eq!(dumped.len(), 2);
    // smtp-sink stores LF lines and a blank line after the message.
    assert_eq!(dumped[0].1, "no final newline\n\n");
    let expected = String::from_utf8(BODY.to_vec())
        .unwrap()
        .replace("\r\n", "\n")
        + "\n";
    assert_eq!(dumped[1].1, expected);
    assert!(
        dumped[1].0.contains("BODY=8BITMIME"),
        "MAIL args: {}",
        dumped[1].0
    );
}

#[test]
fn fifty_messages_share_at_most_two_connections() {
    let sink = Sink::start("reuse", &[]);
    let addr = sink.addr;
    let outcomes = run(async move {
        let pool = Rc::new(Pool::new(config()));
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let pool = pool.clone();
                glommio::spawn_local(async move {
                    let rcpt = format!("user{i}@dst.test");
                    pool.send(addr, &envelope(&[rcpt.as_str()]), BODY).await
                })
            })
            .collect();
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await);
        }
        assert!(pool.idle_connections(addr) <= 2);
        pool.close_idle().await;
        outcomes
    });
    for o in &outcomes {
        assert_eq!(
            o.as_ref().unwrap().iter().map(code_of).collect::<Vec<_>>(),
            vec![('D', 250)]
        );
    }
    let (sessions, quits, messages) = sink.wait_for(|c| c.2 >= 50 && c.1 >= 1);
    assert_eq!(messages, 50);
    let ours = sessions - sink.sessions_before;
    assert!(
        (1..=2).contains(&ours),
        "{ours} sessions for 50 messages with connections_per_host_max=2"
    );
    assert_eq!(quits, ours, "every pooled connection ends with QUIT");
}

#[test]
fn messages_per_connection_max_replaces_the_connection() {
    let sink = Sink::start("permax", &[]);
    run(async {
        let mut cfg = config();
        cfg.messages_per_connection_max = 3;
        let pool = Pool::new(cfg);
        for _ in 0..7 {
            pool.send(sink.addr, &envelope(&["a@dst.test"]), BODY)
                .await
                .unwrap();
        }
        pool.close_idle().await;
    });
    let (sessions, _, _) = sink.wait_for(|c| c.2 >= 7 && c.0 >= sink.sessions_before + 3);
    assert_eq!(
        sessions - sink.sessions_before,
        3,
        "7 messages, 3 per connection"
    );
}

/// One message with two recipients to an smtp-sink started with `options`.
fn outcome_with(name: &str, options: &[&str]) -> (Result<Vec<(char, u16)>, String>, usize) {
    let sink = Sink::start(name, options);
    run(async {
        let pool = Pool::new(config());
        let result = pool
            .send(sink.addr, &envelope(&["a@dst.test", "b@dst.test"]), BODY)
            .await;
        let idle = pool.idle_connections(sink.addr);
        (
            result
                .map(|o| o.iter().map(code_of).collect())
                .map_err(|e| e.reason),
            idle,
        )
    })
}

#[test]
fn refusals_at_each_command_from_a_real_server() {
    // (smtp-sink option, expected outcome per recipient, connection kept)
    let cases: &[(&[&str], (char, u16), bool)] = &[
        (&["-r", "MAIL"], ('T', 450), true),
        (&["-f", "MAIL"], ('F', 500), true),
        (&["-r", "RCPT"], ('T', 450), true),
        (&["-f", "RCPT"], ('F', 500), true),
        (&["-r", "DATA"], ('T', 450), true),
        (&["-f", "DATA"], ('F', 500), true),
        (&["-r", "."], ('T', 450), true),
        (&["-f", "."], ('F', 500), true),
        (&["-f", "EHLO"], ('D', 250), true),
    ];
    for (i, (options, expected, kept)) in cases.iter().enumerate() {
        let (result, idle) = outcome_with(&format!("refuse{i}"), options);
        assert_eq!(
            result,
            Ok(vec![*expected, *expected]),
            "smtp-sink {options:?}"
        );
        assert_eq!(
            idle == 1,
            *kept,
            "smtp-sink {options:?}: connection kept for reuse"
        );
    }
}

#[test]
fn hang_ups_from_a_real_server_are_transport_errors() {
    for (i, options) in [
        &["-Q", "CONNECT"][..],
        &["-f", "CONNECT"],
        &["-Q", "RCPT"],
        &["-q", "."],
        &["-q", "MAIL"],
    ]
    .iter()
    .enumerate()
    {
        let (result, idle) = outcome_with(&format!("hangup{i}"), options);
        assert!(result.is_err(), "smtp-sink {options:?}: {result:?}");
        assert_eq!(idle, 0);
    }
}

#[test]
fn a_pooled_connection_closed_by_the_server_is_replaced_unseen() {
    // smtp-sink -t 1 drops a connection idle for a second; the pool still
    // holds it (idle_timeout 30s) and finds it dead at the next MAIL.
    let sink = Sink::start("stale", &["-t", "1"]);
    run(async {
        let pool = Pool::new(config());
        let env = envelope(&["a@dst.test"]);
        pool.send(sink.addr, &env, BODY).await.unwrap();
        assert_eq!(pool.idle_connections(sink.addr), 1);
        glommio::timer::sleep(Duration::from_millis(2500)).await;
        let outcome = pool.send(sink.addr, &env, BODY).await.unwrap();
        assert_eq!(
            outcome.iter().map(code_of).collect::<Vec<_>>(),
            vec![('D', 250)]
        );
    });
    let (sessions, _, messages) = sink.wait_for(|c| c.2 >= 2 && c.0 >= sink.sessions_before + 2);
    assert_eq!(messages, 2);
    assert_eq!(
        sessions - sink.sessions_before,
        2,
        "the stale connection was replaced by a fresh one"
    );
}

#[test]
fn idle_connections_get_quit_after_idle_timeout() {
    let sink = Sink::start("idle", &[]);
    run(async {
        let mut cfg = config();
        cfg.idle_timeout = Duration::from_millis(200);
        let pool = Pool::new(cfg);
        pool.send(sink.addr, &envelope(&["a@dst.test"]), BODY)
            .await
            .unwrap();
        assert_eq!(pool.idle_connections(sink.addr), 1);
        glommio::timer::sleep(Duration::from_millis(600)).await;
        assert_eq!(pool.idle_connections(sink.addr), 0);
    });
    let (sessions, quits, _) = sink.wait_for(|c| c.1 >= 1);
    assert_eq!((sessions - sink.sessions_before, quits), (1, 1));
}

#[test]
fn refused_port_is_a_transport_error_at_once() {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let started = Instant::now();
    let result = run(async {
        Pool::new(config())
            .send(addr, &envelope(&["a@dst.test"]), BODY)
            .await
    });
    let error = result.unwrap_err();
    assert_eq!(error.host, addr);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    assert!(error.reason.contains("connect"), "{}", error.reason);
}

/// Not a pass/fail test: how fast the pool pushes small messages into
/// smtp-sink from many concurrent tasks on one executor.
/// `cargo test --release --test pool_smtp_sink -- --ignored --nocapture`
#[test]
#[ignore]
fn throughput_many_tasks_one_host() {
    let sink = Sink::start_with("throughput", &["-m", "512"], false);
    let addr = sink.addr;
    let (tasks_n, per_task) = (50, 400);
    let body: Vec<u8> = b"Subject: load\r\n\r\n"
        .iter()
        .chain(&b"0123456789abcdef\r\n".repeat(200))
        .copied()
        .collect();
    let body_bytes = body.len();
    let started = Instant::now();
    let delivered = run(async move {
        let mut cfg = config();
        cfg.connections_per_host_max = 16;
        let pool = Rc::new(Pool::new(cfg));
        let body = Rc::new(body);
        let tasks: Vec<_> = (0..tasks_n)
            .map(|t| {
                let (pool, body) = (pool.clone(), body.clone());
                glommio::spawn_local(async move {
                    let env = envelope(&[format!("u{t}@dst.test").as_str()]);
                    let mut ok = 0;
                    for _ in 0..per_task {
                        let o = pool.send(addr, &env, &body).await.unwrap();
                        ok += matches!(o[0], RecipientOutcome::Delivered(_)) as usize;
                    }
                    ok
                })
            })
            .collect();
        let mut delivered = 0;
        for task in tasks {
            delivered += task.await;
        }
        pool.close_idle().await;
        delivered
    });
    let took = started.elapsed();
    assert_eq!(delivered, tasks_n * per_task);
    println!(
        "{delivered} messages of {} bytes, 16 connections: {took:?}, {:.0} msg/s",
        body_bytes,
        delivered as f64 / took.as_secs_f64()
    );
}
