// SPDX-License-Identifier: MIT OR Apache-2.0
//! `org.facegate.Gate1` against a real, private dbus-daemon: properties, change signals, passage
//! signals, the privilege check by uid (callers of another uid through `setpriv`), the bus policy
//! file, the shipped introspection XML and name conflicts.
//!
//! Needs dbus-daemon (package dbus-daemon), busctl (systemd), gdbus (libglib2.0-bin) and setpriv
//! (util-linux), and must run as root (to call as uid 65534). A missing tool fails the test.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use facegate_dbus::{
    BUS_NAME, BusAddress, ControlError, DbusError, DenyReason, GateBus, GateControl, GateProxy,
    INTERFACE, LastDecision, Mode, OBJECT_PATH, State, Stats, Verdict, read_stats, serve,
};
use facegated::bus::authorize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use zbus::Connection;
use zbus::export::futures_core::Stream;

const TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Tools and the private bus

/// The absolute path of `tool`, or a failure naming the Debian package that ships it.
fn require(tool: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let p = dir.join(tool);
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "{tool} is not installed: install the Debian package {package} (apt-get install {package})"
    );
}

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "these tests call the service as another uid through setpriv and must run as root"
    );
}

struct Bus {
    address: String,
    _daemon: Child,
    _dir: tempfile::TempDir,
}

const OPEN_POLICY: &str = r#"
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_type="method_return"/>
    <allow send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="*"/>
  </policy>
"#;

/// The system bus's default policy (dbus 1.14 system.conf), so the included service policy file
/// is judged as on a real system.
const SYSTEM_LIKE_POLICY: &str = r#"
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"
          send_member="UpdateActivationEnvironment"/>
  </policy>
"#;

/// Starts a private dbus-daemon listening on a socket another uid can reach, with `policy`
/// (the `<policy>`/`<include>` part of the configuration).
async fn start_bus(policy: &str) -> Bus {
    let daemon = require("dbus-daemon", "dbus-daemon");
    let dir = tempfile::Builder::new()
        .prefix("facegate-dbus-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = dir.path().join("bus.conf");
    std::fs::write(
        &config,
        format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}/bus</listen>
  <auth>EXTERNAL</auth>
{policy}
</busconfig>
"#,
            dir.path().display()
        ),
    )
    .unwrap();
    let mut child = Command::new(daemon)
        .arg(format!("--config-file={}", config.display()))
        .args(["--nofork", "--print-address=1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("cannot start dbus-daemon");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let address = tokio::time::timeout(TIMEOUT, lines.next_line())
        .await
        .expect("dbus-daemon printed no address")
        .unwrap()
        .expect("dbus-daemon exited without an address (bad configuration?)");
    assert!(address.starts_with("unix:"), "{address}");
    Bus {
        address,
        _daemon: child,
        _dir: dir,
    }
}

async fn run(program: &Path, args: &[&str]) -> Output {
    tokio::time::timeout(TIMEOUT, Command::new(program).args(args).output())
        .await
        .unwrap_or_else(|_| panic!("{} {args:?} timed out", program.display()))
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()))
}

/// Runs `program args` as uid/gid 65534 with no supplementary groups.
async fn run_as_nobody(program: &Path, args: &[&str]) -> Output {
    let setpriv = require("setpriv", "util-linux");
    let mut all = vec![
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        program.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    run(&setpriv, &all).await
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn busctl() -> PathBuf {
    require("busctl", "systemd")
}

fn gdbus() -> PathBuf {
    require("gdbus", "libglib2.0-bin")
}

/// `busctl --address=ADDR call org.facegate.Gate /org/facegate/Gate org.facegate.Gate1 ARGS…`
fn busctl_call<'a>(address: &'a str, args: &[&'a str]) -> Vec<String> {
    let mut v = vec![
        format!("--address={address}"),
        "call".into(),
        BUS_NAME.into(),
        OBJECT_PATH.into(),
        INTERFACE.into(),
    ];
    v.extend(args.iter().map(|s| s.to_string()));
    v
}

/// `gdbus call --address ADDR --dest org.facegate.Gate --object-path /org/facegate/Gate
/// --method org.facegate.Gate1.METHOD ARGS…` (arguments in GVariant text form).
fn gdbus_call(address: &str, method: &str, args: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = [
        "call",
        "--address",
        address,
        "--dest",
        BUS_NAME,
        "--object-path",
        OBJECT_PATH,
        "--method",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push(format!("{INTERFACE}.{method}"));
    v.extend(args.iter().map(|s| s.to_string()));
    v
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

// ---------------------------------------------------------------------------------------------
// The fake gate

#[derive(Default)]
struct FakeControl {
    /// Besides root, members of this group may act (the service's own rule).
    privileged_group: String,
    calls: Mutex<Vec<String>>,
    /// `Open("slow")` waits for a message on this channel (a gate that takes its time).
    slow: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
}

impl FakeControl {
    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

impl GateControl for FakeControl {
    fn authorize(&self, uid: u32) -> Result<(), String> {
        authorize(uid, &self.privileged_group)
    }
    fn open(&self, reason: &str, _uid: u32) -> Result<String, ControlError> {
        let mut calls = self.calls.lock().unwrap();
        calls.push(format!("open:{reason}"));
        if reason == "fail" {
            return Err(ControlError::Failed("the relay is stuck".into()));
        }
        let id = format!("p-{:04}", calls.len());
        drop(calls);
        if reason == "slow"
            && let Some(release) = self.slow.lock().unwrap().take()
        {
            release.recv_timeout(TIMEOUT).unwrap();
        }
        Ok(id)
    }
    fn set_mode(&self, mode: Mode) -> Result<(), ControlError> {
        self.calls.lock().unwrap().push(format!("set_mode:{mode}"));
        Ok(())
    }
    fn reload_gallery(&self) -> Result<u64, ControlError> {
        self.calls.lock().unwrap().push("reload_gallery".into());
        Ok(42)
    }
}

async fn serve_fake(address: &str, group: &str) -> (GateBus, Arc<FakeControl>) {
    let control = Arc::new(FakeControl {
        privileged_group: group.into(),
        ..FakeControl::default()
    });
    let bus = serve(
        &bus_address(address),
        control.clone(),
        env!("CARGO_PKG_VERSION"),
    )
    .await
    .unwrap_or_else(|e| panic!("serve: {e}"));
    (bus, control)
}

async fn client(address: &str) -> (Connection, GateProxy<'static>) {
    let conn = zbus::connection::Builder::address(address)
        .build()
        .await
        .unwrap();
    let proxy = GateProxy::new(&conn).await.unwrap();
    (conn, proxy)
}

/// A proxy that asks the service on every property read.
async fn client_uncached(address: &str) -> (Connection, GateProxy<'static>) {
    let conn = zbus::connection::Builder::address(address)
        .build()
        .await
        .unwrap();
    let proxy = GateProxy::builder(&conn)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .unwrap();
    (conn, proxy)
}

/// The gate's raw PropertiesChanged signals, subscribed (the match rule in place) on return.
async fn properties_changed(conn: &Connection) -> zbus::fdo::PropertiesChangedStream {
    zbus::fdo::PropertiesProxy::builder(conn)
        .destination(BUS_NAME)
        .path(OBJECT_PATH)
        .build()
        .await
        .unwrap()
        .receive_properties_changed()
        .await
        .unwrap()
}

fn granted_p001() -> LastDecision {
    LastDecision {
        verdict: Some(Verdict::Granted),
        id: Some("p-001".into()),
        ..LastDecision::default()
    }
}

fn bus_address(address: &str) -> BusAddress {
    BusAddress::Address(address.into())
}

fn running_status() -> Stats {
    Stats {
        state: State::Running,
        mode: Mode::Normal,
        gallery_generation: 3,
        gallery_size: 120,
        effective_threshold: 0.481,
        expected_false_grant_rate: 9.6e-5,
        safe_gallery_size: 4,
        passages_today: 10,
        denied_today: 2,
        fps: 14.5,
        last_decision: granted_p001(),
        uptime_s: 100,
        restarts: 1,
        version: env!("CARGO_PKG_VERSION").into(),
        ..Stats::default()
    }
}

async fn next<S: Stream + Unpin>(stream: &mut S, what: &str) -> S::Item {
    let fut = std::future::poll_fn(|cx| std::pin::Pin::new(&mut *stream).poll_next(cx));
    tokio::time::timeout(TIMEOUT, fut)
        .await
        .unwrap_or_else(|_| panic!("no {what} within {TIMEOUT:?}"))
        .unwrap_or_else(|| panic!("{what} stream ended"))
}

/// The group whose gid is 65534 (Debian: nogroup): uid 65534's primary group.
fn nobody_group() -> String {
    nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(65534))
        .unwrap()
        .expect("no group with gid 65534 on this system")
        .name
}

// ---------------------------------------------------------------------------------------------
// Tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn properties_are_readable_by_zbus_busctl_and_gdbus() {
    let (busctl, gdbus) = (busctl(), gdbus());
    let bus = start_bus(OPEN_POLICY).await;
    let (gate, _control) = serve_fake(&bus.address, "facegate-staff").await;

    let (_conn, proxy) = client(&bus.address).await;
    assert_eq!(proxy.state().await.unwrap(), State::Starting);
    assert_eq!(proxy.mode().await.unwrap(), Mode::Normal);
    assert_eq!(
        proxy.last_decision().await.unwrap(),
        LastDecision::default()
    );
    assert_eq!(proxy.version().await.unwrap(), env!("CARGO_PKG_VERSION"));

    gate.update(running_status()).await;
    let (_conn, proxy) = client(&bus.address).await;
    assert_eq!(proxy.state().await.unwrap(), State::Running);
    assert_eq!(proxy.gallery_generation().await.unwrap(), 3);
    assert_eq!(proxy.gallery_size().await.unwrap(), 120);
    assert_eq!(proxy.passages_today().await.unwrap(), 10);
    assert_eq!(proxy.denied_today().await.unwrap(), 2);
    assert_eq!(proxy.fps().await.unwrap(), 14.5);
    assert_eq!(proxy.last_decision().await.unwrap(), granted_p001());

    let addr = format!("--address={}", bus.address);
    for (prop, want) in [
        ("State", "s \"running\""),
        ("Mode", "s \"normal\""),
        ("GalleryGeneration", "t 3"),
        ("GallerySize", "t 120"),
        ("PassagesToday", "t 10"),
        ("DeniedToday", "t 2"),
        ("Fps", "d 14.5"),
        ("Version", &format!("s \"{}\"", env!("CARGO_PKG_VERSION"))),
    ] {
        let args = [
            addr.as_str(),
            "get-property",
            BUS_NAME,
            OBJECT_PATH,
            INTERFACE,
            prop,
        ];
        // Readable by anyone: as root and as uid 65534.
        for out in [
            run(&busctl, &args).await,
            run_as_nobody(&busctl, &args).await,
        ] {
            assert!(out.status.success(), "{prop}: {}", text(&out));
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), want, "{prop}");
        }
    }

    let out = run(
        &gdbus,
        &[
            "introspect",
            "--address",
            &bus.address,
            "--dest",
            BUS_NAME,
            "--object-path",
            OBJECT_PATH,
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let intro = String::from_utf8_lossy(&out.stdout);
    for want in [
        "interface org.facegate.Gate1",
        "Open(in  s reason,",
        "out s passage_id);",
        "SetMode(in  s mode);",
        "ReloadGallery(out t generation);",
        "Stats(out a{sv} stats);",
        "PassageGranted(s passage_id,",
        "d similarity);",
        "PassageDenied(s reason);",
        "readonly s State = 'running';",
        "readonly t GalleryGeneration = 3;",
        "readonly d Fps = 14.5;",
        "readonly s Version",
    ] {
        assert!(intro.contains(want), "missing {want:?} in\n{intro}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_emits_properties_changed_for_changed_properties_only() {
    let bus = start_bus(OPEN_POLICY).await;
    let (gate, _control) = serve_fake(&bus.address, "facegate-staff").await;
    gate.update(running_status()).await;

    let (conn, proxy) = client(&bus.address).await;
    let mut changes = properties_changed(&conn).await;
    assert_eq!(proxy.state().await.unwrap(), State::Running);
    let mut state_changes = proxy.receive_state_changed().await;

    // The same status again: nothing changes, nothing is emitted.
    gate.update(running_status()).await;
    let mut s = running_status();
    s.state = State::Degraded;
    s.passages_today = 11;
    s.uptime_s = 200; // not a property
    gate.update(s.clone()).await;

    // The first signals are the second update's (the identical update emitted none): one
    // PropertiesChanged per changed property, from zbus's generated emitters.
    let mut changed = HashMap::new();
    for _ in 0..2 {
        let signal = next(&mut changes, "PropertiesChanged").await;
        let args = signal.args().unwrap();
        assert_eq!(args.interface_name().as_str(), INTERFACE);
        for (name, value) in args.changed_properties() {
            changed.insert(name.to_string(), value.try_to_owned().unwrap());
        }
    }
    let names: HashSet<&str> = changed.keys().map(String::as_str).collect();
    assert_eq!(names, HashSet::from(["State", "PassagesToday"]));
    assert_eq!(
        String::try_from(changed["State"].try_clone().unwrap()).unwrap(),
        "degraded"
    );
    assert_eq!(
        u64::try_from(changed["PassagesToday"].try_clone().unwrap()).unwrap(),
        11
    );

    // zbus's property cache follows the signal.
    loop {
        let change = next(&mut state_changes, "State change").await;
        if change.get().await.unwrap() == State::Degraded {
            break;
        }
    }
    assert_eq!(proxy.state().await.unwrap(), State::Degraded);
    // Each property has its own signal: the cache takes PassagesToday from the next one.
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while proxy.passages_today().await.unwrap() != 11 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "PassagesToday never cached"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Uncached reads see the new values too.
    let (_c2, fresh) = client_uncached(&bus.address).await;
    assert_eq!(fresh.state().await.unwrap(), State::Degraded);
    assert_eq!(fresh.passages_today().await.unwrap(), 11);
    assert_eq!(gate.stats(), s);

    // One property at a time.
    let mut s2 = s.clone();
    s2.fps = 9.25;
    gate.update(s2).await;
    let signal = next(&mut changes, "PropertiesChanged").await;
    let args = signal.args().unwrap();
    let changed: Vec<&str> = args.changed_properties().keys().copied().collect();
    assert_eq!(changed, vec!["Fps"]);
    assert_eq!(fresh.fps().await.unwrap(), 9.25);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passage_signals_reach_zbus_subscribers_and_gdbus_monitor() {
    let gdbus = gdbus();
    let bus = start_bus(OPEN_POLICY).await;
    let (gate, _control) = serve_fake(&bus.address, "facegate-staff").await;

    let (_conn, proxy) = client(&bus.address).await;
    let mut granted = proxy.receive_passage_granted().await.unwrap();
    let mut denied = proxy.receive_passage_denied().await.unwrap();
    let mut tailgating = proxy.receive_tailgating().await.unwrap();

    let mut monitor = Command::new(&gdbus)
        .args([
            "monitor",
            "--address",
            &bus.address,
            "--dest",
            BUS_NAME,
            "--object-path",
            OBJECT_PATH,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("cannot start gdbus monitor");
    let mut lines = BufReader::new(monitor.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(TIMEOUT, lines.next_line())
        .await
        .expect("gdbus monitor printed nothing")
        .unwrap()
        .expect("gdbus monitor exited");
    assert!(first.contains("Monitoring signals"), "{first}");

    gate.passage_granted("p-0001", "ada", 0.75).await;
    gate.passage_denied(DenyReason::Passback).await;

    let g = next(&mut granted, "PassageGranted").await;
    let a = g.args().unwrap();
    assert_eq!(
        (*a.passage_id(), *a.id(), *a.similarity()),
        ("p-0001", "ada", 0.75)
    );
    let d = next(&mut denied, "PassageDenied").await;
    assert_eq!(*d.args().unwrap().reason(), DenyReason::Passback);
    gate.tailgating("p-0001", "o-0002").await;
    let t = next(&mut tailgating, "Tailgating").await;
    let a = t.args().unwrap();
    assert_eq!((*a.passage_id(), *a.outcome_id()), ("p-0001", "o-0002"));

    // gdbus subscribes asynchronously after its banner: emit until it has seen both signals.
    let want_granted = "org.facegate.Gate1.PassageGranted ('p-0001', 'ada', 0.75)";
    let want_denied = "org.facegate.Gate1.PassageDenied ('passback',)";
    let (mut seen_granted, mut seen_denied) = (false, false);
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let mut seen = Vec::new();
    while !(seen_granted && seen_denied) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "gdbus monitor did not report both signals; it printed:\n{}",
            seen.join("\n")
        );
        gate.passage_granted("p-0001", "ada", 0.75).await;
        gate.passage_denied(DenyReason::Passback).await;
        while let Ok(line) =
            tokio::time::timeout(Duration::from_millis(300), lines.next_line()).await
        {
            let line = line.unwrap().expect("gdbus monitor exited");
            seen_granted |= line.contains(want_granted);
            seen_denied |= line.contains(want_denied);
            seen.push(line);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acting_methods_need_root_or_the_privileged_group() {
    require_root();
    let (busctl, gdbus) = (busctl(), gdbus());
    let bus = start_bus(OPEN_POLICY).await;
    let (_gate, control) = serve_fake(&bus.address, "facegate-staff-does-not-exist").await;

    // uid 65534: refused by the service, the gate is never asked.
    for (args, gdbus_args) in [
        (vec!["Open", "s", "test"], vec!["'test'"]),
        (vec!["SetMode", "s", "free"], vec!["'free'"]),
        (vec!["ReloadGallery"], vec![]),
    ] {
        let method = args[0];
        let call = busctl_call(&bus.address, &args);
        let out = run_as_nobody(&busctl, &refs(&call)).await;
        assert!(!out.status.success(), "{method}: {}", text(&out));
        // busctl prints the error's errno text only.
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("Access denied"),
            "{method}: {}",
            text(&out)
        );
        // gdbus shows the error's name and message.
        let out = run_as_nobody(
            &gdbus,
            &refs(&gdbus_call(&bus.address, method, &gdbus_args)),
        )
        .await;
        assert!(!out.status.success(), "{method}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("org.freedesktop.DBus.Error.AccessDenied")
                && err.contains(&format!("{method} is for root and members of group"))
                && err.contains("uid 65534"),
            "{method}: {}",
            text(&out)
        );
    }
    assert!(control.calls().is_empty(), "{:?}", control.calls());

    // Stats is for anyone.
    let call = busctl_call(&bus.address, &["Stats"]);
    let out = run_as_nobody(&busctl, &refs(&call)).await;
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("a{sv} 15 ") && stdout.contains("\"state\" s \"starting\""),
        "{stdout}"
    );
    assert!(control.calls().is_empty(), "{:?}", control.calls());

    // Root: through busctl and through zbus.
    let call = busctl_call(&bus.address, &["Open", "s", "test"]);
    let out = run(&busctl, &refs(&call)).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "s \"p-0001\"");
    let (_conn, proxy) = client(&bus.address).await;
    let mut staff_opened = proxy.receive_staff_opened().await.unwrap();
    proxy.set_mode(Mode::Locked).await.unwrap();
    assert_eq!(proxy.reload_gallery().await.unwrap(), 42);
    assert_eq!(proxy.open("maintenance").await.unwrap(), "p-0004");
    let opened = next(&mut staff_opened, "StaffOpened").await;
    let a = opened.args().unwrap();
    assert_eq!(
        (*a.passage_id(), *a.reason(), *a.uid()),
        ("p-0004", "maintenance", 0)
    );
    assert_eq!(
        control.calls(),
        [
            "open:test",
            "set_mode:locked",
            "reload_gallery",
            "open:maintenance"
        ]
    );

    // Bad arguments and failures of the gate map to D-Bus errors.
    let call = busctl_call(&bus.address, &["SetMode", "s", "sideways"]);
    let out = run(&busctl, &refs(&call)).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("sideways"),
        "the refusal names the bad mode: {}",
        text(&out)
    );
    let e = proxy.open("fail").await.unwrap_err();
    let no_signal = tokio::time::timeout(
        Duration::from_millis(300),
        futures_util::StreamExt::next(&mut staff_opened),
    )
    .await;
    assert!(no_signal.is_err(), "a failed Open emits no StaffOpened");
    assert_eq!(
        zbus::DBusError::name(&e),
        "org.freedesktop.DBus.Error.Failed"
    );
    assert!(e.to_string().contains("the relay is stuck"), "{e}");
    assert_eq!(control.calls().len(), 5, "{:?}", control.calls());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_does_not_wait_for_a_method_in_progress() {
    let bus = start_bus(OPEN_POLICY).await;
    let (gate, control) = serve_fake(&bus.address, "facegate-staff").await;
    let (release, wait) = std::sync::mpsc::channel();
    *control.slow.lock().unwrap() = Some(wait);
    let (_conn, proxy) = client_uncached(&bus.address).await;
    let slow_open = tokio::spawn({
        let proxy = proxy.clone();
        async move { proxy.open("slow").await }
    });
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while !control.calls().contains(&"open:slow".to_string()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "Open never reached the gate"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The gate is busy with Open: status still goes out and reads still answer.
    let quick = Duration::from_secs(2);
    tokio::time::timeout(quick, gate.update(running_status()))
        .await
        .expect("update() waited for Open");
    let state = tokio::time::timeout(quick, proxy.state())
        .await
        .expect("reading State waited for Open");
    assert_eq!(state.unwrap(), State::Running);
    tokio::time::timeout(quick, proxy.stats())
        .await
        .expect("Stats() waited for Open")
        .unwrap();
    assert!(!slow_open.is_finished());
    release.send(()).unwrap();
    let id = tokio::time::timeout(TIMEOUT, slow_open)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(id.unwrap(), "p-0001");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_of_the_privileged_group_may_act() {
    require_root();
    let busctl = busctl();
    let bus = start_bus(OPEN_POLICY).await;
    // uid 65534's primary group is the privileged group.
    let (_gate, control) = serve_fake(&bus.address, &nobody_group()).await;
    for (args, want) in [
        (vec!["Open", "s", "test"], "s \"p-0001\""),
        (vec!["SetMode", "s", "free"], ""),
        (vec!["ReloadGallery"], "t 42"),
    ] {
        let call = busctl_call(&bus.address, &args);
        let out = run_as_nobody(&busctl, &refs(&call)).await;
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), want);
    }
    assert_eq!(
        control.calls(),
        ["open:test", "set_mode:free", "reload_gallery"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_system_bus_policy_file_lets_everyone_read_and_only_staff_act() {
    require_root();
    let (busctl, gdbus) = (busctl(), gdbus());
    let policy_file =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../systemd/org.facegate.Gate.conf");
    let policy_file = policy_file.canonicalize().unwrap();
    // On a real system the service runs as user facegate; here root must be let own the name.
    let bus = start_bus(&format!(
        "{SYSTEM_LIKE_POLICY}\n  <policy user=\"root\"><allow own=\"{BUS_NAME}\"/></policy>\n  \
         <include>{}</include>",
        policy_file.display()
    ))
    .await;
    // The service itself would let uid 65534 act: what stops it here is the bus policy.
    let (gate, control) = serve_fake(&bus.address, &nobody_group()).await;
    gate.update(running_status()).await;

    for (args, gdbus_args) in [
        (vec!["Open", "s", "test"], vec!["'test'"]),
        (vec!["SetMode", "s", "free"], vec!["'free'"]),
        (vec!["ReloadGallery"], vec![]),
    ] {
        let method = args[0];
        let call = busctl_call(&bus.address, &args);
        let out = run_as_nobody(&busctl, &refs(&call)).await;
        assert!(!out.status.success(), "{method}: {}", text(&out));
        let out = run_as_nobody(
            &gdbus,
            &refs(&gdbus_call(&bus.address, method, &gdbus_args)),
        )
        .await;
        assert!(!out.status.success(), "{method}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("org.freedesktop.DBus.Error.AccessDenied")
                && err.contains("Rejected send message"),
            "{method} should be refused by the bus itself: {}",
            text(&out)
        );
    }
    assert!(control.calls().is_empty(), "{:?}", control.calls());

    // Reading is for everyone.
    let addr = format!("--address={}", bus.address);
    let stats = busctl_call(&bus.address, &["Stats"]);
    for args in [
        vec![
            addr.as_str(),
            "get-property",
            BUS_NAME,
            OBJECT_PATH,
            INTERFACE,
            "State",
        ],
        vec![addr.as_str(), "introspect", BUS_NAME, OBJECT_PATH],
        refs(&stats),
    ] {
        let out = run_as_nobody(&busctl, &args).await;
        assert!(out.status.success(), "{args:?}: {}", text(&out));
    }
    let set = [
        addr.as_str(),
        "set-property",
        BUS_NAME,
        OBJECT_PATH,
        INTERFACE,
        "Mode",
        "s",
        "free",
    ];
    let out = run_as_nobody(&busctl, &set).await;
    assert!(!out.status.success(), "{}", text(&out));

    // Root may act.
    let call = busctl_call(&bus.address, &["SetMode", "s", "locked"]);
    let out = run(&busctl, &refs(&call)).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(control.calls(), ["set_mode:locked"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_and_read_status() {
    let bus = start_bus(OPEN_POLICY).await;
    let (gate, _control) = serve_fake(&bus.address, "facegate-staff").await;
    gate.update(running_status()).await;

    // On the wire: one a{sv} with a snake_case key per value.
    let (conn, _proxy) = client(&bus.address).await;
    let reply = conn
        .call_method(Some(BUS_NAME), OBJECT_PATH, Some(INTERFACE), "Stats", &())
        .await
        .unwrap();
    let stats: HashMap<String, zbus::OwnedVariant> = reply.body().deserialize().unwrap();
    let keys: HashSet<&str> = stats.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        HashSet::from([
            "state",
            "stream_start_unix_ns",
            "effective_threshold",
            "expected_false_grant_rate",
            "safe_gallery_size",
            "mode",
            "gallery_generation",
            "gallery_size",
            "passages_today",
            "denied_today",
            "fps",
            "last_decision",
            "version",
            "uptime_s",
            "restarts",
        ])
    );

    let status = read_stats(&bus_address(&bus.address)).await.unwrap();
    let want = running_status();
    // uptime_s keeps counting after the update.
    assert!(
        (want.uptime_s..want.uptime_s + 5).contains(&status.uptime_s),
        "{status:?}"
    );
    assert_eq!(
        Stats {
            uptime_s: want.uptime_s,
            ..status.clone()
        },
        want
    );

    // Nothing serves the name: a clear error.
    drop(gate);
    let empty = start_bus(OPEN_POLICY).await;
    let e = read_stats(&bus_address(&empty.address)).await.unwrap_err();
    assert!(matches!(e, DbusError::NotRunning { .. }), "{e:?}");
    assert!(e.to_string().contains("not running"), "{e}");
    assert!(e.to_string().contains(&empty.address), "{e}");
    // No bus at all.
    let e = read_stats(&bus_address("unix:path=/nonexistent/facegate-bus"))
        .await
        .unwrap_err();
    assert!(matches!(e, DbusError::Connect { .. }), "{e:?}");
    assert!(e.to_string().contains("/nonexistent/facegate-bus"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_service_on_the_same_bus_is_refused() {
    let bus = start_bus(OPEN_POLICY).await;
    let (gate, _control) = serve_fake(&bus.address, "facegate-staff").await;
    let control = Arc::new(FakeControl::default());
    let e = match serve(&bus_address(&bus.address), control, "0").await {
        Ok(_) => panic!("a second service took the name"),
        Err(e) => e,
    };
    assert!(matches!(e, DbusError::NameTaken { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains(BUS_NAME) && msg.contains(&bus.address),
        "{msg}"
    );
    // The first one still serves.
    gate.update(running_status()).await;
    let (_conn, proxy) = client(&bus.address).await;
    assert_eq!(proxy.state().await.unwrap(), State::Running);
}

/// The interface element of an introspection document, whitespace normalised.
fn gate_interface(xml: &str) -> String {
    let start = xml
        .find(&format!("<interface name=\"{INTERFACE}\">"))
        .unwrap_or_else(|| panic!("no {INTERFACE} in\n{xml}"));
    let end = start + xml[start..].find("</interface>").unwrap() + "</interface>".len();
    let words: Vec<&str> = xml[start..end].split_whitespace().collect();
    words.join(" ").replace("> <", "><")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_introspection_xml_matches_the_live_service() {
    let gdbus = gdbus();
    let bus = start_bus(OPEN_POLICY).await;
    let (_gate, _control) = serve_fake(&bus.address, "facegate-staff").await;
    let out = run(
        &gdbus,
        &[
            "introspect",
            "--xml",
            "--address",
            &bus.address,
            "--dest",
            BUS_NAME,
            "--object-path",
            OBJECT_PATH,
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let live = String::from_utf8(out.stdout).unwrap();
    // The same text through zbus's own Introspectable proxy.
    let conn = zbus::connection::Builder::address(bus.address.as_str())
        .build()
        .await
        .unwrap();
    let intro = zbus::fdo::IntrospectableProxy::builder(&conn)
        .destination(BUS_NAME)
        .path(OBJECT_PATH)
        .build()
        .await
        .unwrap()
        .introspect()
        .await
        .unwrap();
    assert_eq!(gate_interface(&intro), gate_interface(&live));

    let shipped_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dbus/org.facegate.Gate1.xml");
    if std::env::var_os("FACEGATE_BLESS_DBUS_XML").is_some() {
        // Regenerate: FACEGATE_BLESS_DBUS_XML=1 cargo test -p facegated --test dbus shipped
        let start = live
            .find(&format!("  <interface name=\"{INTERFACE}\">"))
            .unwrap();
        let end = start + live[start..].find("</interface>\n").unwrap() + "</interface>\n".len();
        let doc = format!(
            "<!DOCTYPE node PUBLIC \"-//freedesktop//DTD D-BUS Object Introspection 1.0//EN\"\n \
             \"http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd\">\n\
             <!-- org.facegate.Gate1: object /org/facegate/Gate of org.facegate.Gate (facegated).\n     \
             Generated from the running service; appliance/facegated/tests/dbus.rs checks it against live introspection. -->\n\
             <node name=\"{OBJECT_PATH}\">\n{}</node>\n",
            &live[start..end]
        );
        std::fs::write(&shipped_path, doc).unwrap();
    }
    let shipped = std::fs::read_to_string(&shipped_path)
        .unwrap_or_else(|e| panic!("{}: {e}", shipped_path.display()));
    assert_eq!(
        gate_interface(&shipped),
        gate_interface(&live),
        "{} differs from the live introspection (regenerate with FACEGATE_BLESS_DBUS_XML=1); live:\n{live}",
        shipped_path.display()
    );
    // It is the whole interface: every member the proxy knows is declared.
    let mut members: HashMap<&str, usize> = HashMap::new();
    for m in [
        "<method name=\"Open\">",
        "<method name=\"SetMode\">",
        "<method name=\"ReloadGallery\">",
        "<method name=\"Stats\">",
        "<signal name=\"PassageGranted\">",
        "<signal name=\"PassageDenied\">",
        "<signal name=\"StaffOpened\">",
        "<signal name=\"Tailgating\">",
        "<property name=\"State\" type=\"s\" access=\"read\"",
        "<property name=\"Mode\" type=\"s\" access=\"read\"",
        "<property name=\"GalleryGeneration\" type=\"t\" access=\"read\"",
        "<property name=\"GallerySize\" type=\"t\" access=\"read\"",
        "<property name=\"EffectiveThreshold\" type=\"d\" access=\"read\"",
        "<property name=\"ExpectedFalseGrantRate\" type=\"d\" access=\"read\"",
        "<property name=\"SafeGallerySize\" type=\"t\" access=\"read\"",
        "<property name=\"PassagesToday\" type=\"t\" access=\"read\"",
        "<property name=\"DeniedToday\" type=\"t\" access=\"read\"",
        "<property name=\"Fps\" type=\"d\" access=\"read\"",
        "<property name=\"LastDecision\" type=\"a{sv}\" access=\"read\"",
        "<property name=\"Version\" type=\"s\" access=\"read\"",
    ] {
        *members.entry(m).or_default() += shipped.matches(m).count();
    }
    let missing: Vec<_> = members.iter().filter(|(_, n)| **n != 1).collect();
    assert!(missing.is_empty(), "{missing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_refuses_bad_reasons_before_the_gate_is_asked() {
    let bus = start_bus(OPEN_POLICY).await;
    let (_gate, control) = serve_fake(&bus.address, "no-such-group-facegate").await;
    let (_conn, proxy) = client(&bus.address).await;
    let long = "x".repeat(facegate_dbus::OPEN_REASON_MAX_CHARS + 1);
    for (reason, rule) in [
        ("", "must not be empty"),
        (long.as_str(), "at most 200 characters"),
        ("ok\nERROR forged", "control characters"),
    ] {
        let e = proxy.open(reason).await.unwrap_err();
        let said = e.to_string();
        assert!(
            said.contains("InvalidArgs") && said.contains(rule),
            "{reason:?}: {said}"
        );
    }
    let most = "y".repeat(facegate_dbus::OPEN_REASON_MAX_CHARS);
    proxy.open(&most).await.unwrap();
    assert_eq!(control.calls(), [format!("open:{most}")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_mode_is_published_as_soon_as_it_returns() {
    let bus = start_bus(OPEN_POLICY).await;
    let (gate, _control) = serve_fake(&bus.address, "no-such-group-facegate").await;
    gate.update(running_status()).await;
    let (conn, proxy) = client_uncached(&bus.address).await;
    // The raw signal, subscribed before SetMode: a caching proxy's change stream would race
    // its own first fetch of the properties (a cache filled after SetMode sees no change).
    let mut changes = properties_changed(&conn).await;
    // The fake's status never follows: what Mode says comes from SetMode alone.
    proxy.set_mode(Mode::Free).await.unwrap();
    assert_eq!(proxy.mode().await.unwrap(), Mode::Free);
    assert_eq!(proxy.stats().await.unwrap().mode, Mode::Free);
    // PropertiesChanged went out too.
    loop {
        let signal = next(&mut changes, "PropertiesChanged with Mode").await;
        let args = signal.args().unwrap();
        if let Some(mode) = args.changed_properties().get("Mode") {
            assert_eq!(String::try_from(mode.try_clone().unwrap()).unwrap(), "free");
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_failed_is_a_signal_and_a_state() {
    let bus = start_bus(OPEN_POLICY).await;
    let (gate, _control) = serve_fake(&bus.address, "no-such-group-facegate").await;
    let (_conn, proxy) = client_uncached(&bus.address).await;
    let mut failed = proxy.receive_journal_failed().await.unwrap();
    gate.update(Stats {
        state: State::JournalFailed,
        ..running_status()
    })
    .await;
    gate.journal_failed("journal /x: database or disk is full")
        .await;
    let signal = next(&mut failed, "JournalFailed").await;
    assert_eq!(
        signal.args().unwrap().detail().to_string(),
        "journal /x: database or disk is full"
    );
    assert_eq!(proxy.state().await.unwrap(), State::JournalFailed);
    let address = format!("--address={}", bus.address);
    let out = run(
        &busctl(),
        &[
            &address,
            "get-property",
            BUS_NAME,
            OBJECT_PATH,
            INTERFACE,
            "State",
        ],
    )
    .await;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "s \"journal-failed\"",
        "{}",
        text(&out)
    );
}
