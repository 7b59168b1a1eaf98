//! The netfilter rules of transparent capture, as `iptables-restore` input: pure, no I/O.
//!
//! Four chains of Portolan's own in the `nat` table, reached from `PREROUTING` (inbound) and
//! `OUTPUT` (outbound) by one jump each:
//!
//! * `PORTOLAN_INBOUND`: connections arriving for the pod. The sidecar's own ports and the
//!   excluded ports return; the captured ports (all by default) go to `PORTOLAN_IN_REDIRECT`,
//!   which redirects them to the sidecar's inbound port.
//! * `PORTOLAN_OUTPUT`: connections the pod opens. Excluded ports return; the proxy (by UID,
//!   and GID if given) returns, but for its calls to the pod's own IP over loopback, which go
//!   to the inbound listener like any inbound connection; the application's loopback traffic
//!   (`localhost`, its own pod IP) returns; `127.0.0.1` and the excluded ranges return; the
//!   included ranges (all by default) go to `PORTOLAN_REDIRECT`, which redirects them to the
//!   sidecar's outbound port.
//!
//! Declaring a chain in `iptables-restore --noflush` input empties it first, so applying the
//! same rules twice leaves one copy; the two jumps are written only when the table lacks them
//! (see [`Rules::restore_input`]).

use ipnet::IpNet;
use std::fmt::Write as _;

/// The chain `PREROUTING` jumps to.
pub const INBOUND_CHAIN: &str = "PORTOLAN_INBOUND";
/// The chain that redirects to the inbound port.
pub const IN_REDIRECT_CHAIN: &str = "PORTOLAN_IN_REDIRECT";
/// The chain `OUTPUT` jumps to.
pub const OUTPUT_CHAIN: &str = "PORTOLAN_OUTPUT";
/// The chain that redirects to the outbound port.
pub const REDIRECT_CHAIN: &str = "PORTOLAN_REDIRECT";

/// Which ports (inbound) or ranges (outbound) are captured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Include<T> {
    /// Everything (`*`).
    All,
    /// Only these; none captures nothing.
    Only(Vec<T>),
}

/// What to capture and where to send it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rules {
    /// The sidecar's outbound listener port.
    pub outbound_port: u16,
    /// The sidecar's inbound listener port.
    pub inbound_port: u16,
    /// The UID the proxy runs as: its own connections are never captured.
    pub proxy_uid: u32,
    /// The GID the proxy runs as, when its connections are also told apart by group.
    pub proxy_gid: Option<u32>,
    /// Inbound destination ports captured.
    pub inbound_ports: Include<u16>,
    /// Inbound destination ports never captured.
    pub exclude_inbound_ports: Vec<u16>,
    /// Outbound destination ports never captured.
    pub exclude_outbound_ports: Vec<u16>,
    /// Outbound destination ranges captured.
    pub include_outbound_cidrs: Include<IpNet>,
    /// Outbound destination ranges never captured.
    pub exclude_outbound_cidrs: Vec<IpNet>,
}

// === impl Rules ===

impl Rules {
    /// The two jumps into Portolan's chains, as `iptables-save` prints them.
    pub fn jumps() -> [String; 2] {
        [
            format!("-A PREROUTING -p tcp -j {INBOUND_CHAIN}"),
            format!("-A OUTPUT -p tcp -j {OUTPUT_CHAIN}"),
        ]
    }

    /// The rules of Portolan's chains (without the jumps into them), in order.
    pub fn chain_rules(&self) -> Vec<String> {
        let mut rules = vec![
            format!(
                "-A {IN_REDIRECT_CHAIN} -p tcp -j REDIRECT --to-ports {}",
                self.inbound_port
            ),
            format!(
                "-A {REDIRECT_CHAIN} -p tcp -j REDIRECT --to-ports {}",
                self.outbound_port
            ),
        ];
        rules.extend(self.inbound_rules());
        rules.extend(self.outbound_rules());
        rules
    }

    fn inbound_rules(&self) -> Vec<String> {
        let ret = |port: u16| format!("-A {INBOUND_CHAIN} -p tcp --dport {port} -j RETURN");
        let mut own = vec![self.inbound_port, self.outbound_port];
        own.dedup();
        let mut rules: Vec<String> = own
            .into_iter()
            .chain(self.exclude_inbound_ports.iter().copied())
            .map(ret)
            .collect();
        match &self.inbound_ports {
            Include::All => rules.push(format!("-A {INBOUND_CHAIN} -p tcp -j {IN_REDIRECT_CHAIN}")),
            Include::Only(ports) => rules.extend(ports.iter().map(|port| {
                format!("-A {INBOUND_CHAIN} -p tcp --dport {port} -j {IN_REDIRECT_CHAIN}")
            })),
        }
        rules
    }

    fn outbound_rules(&self) -> Vec<String> {
        let chain = OUTPUT_CHAIN;
        let mut rules: Vec<String> = self
            .exclude_outbound_ports
            .iter()
            .map(|port| format!("-A {chain} -p tcp --dport {port} -j RETURN"))
            .collect();
        let mut owners = vec![format!("--uid-owner {}", self.proxy_uid)];
        owners.extend(self.proxy_gid.map(|gid| format!("--gid-owner {gid}")));
        for owner in &owners {
            // The proxy calling the pod's own IP (its own Service's endpoint) over loopback:
            // through the inbound listener, as a peer's call would.
            rules.push(format!(
                "-A {chain} ! -d 127.0.0.1/32 -o lo -m owner {owner} -j {IN_REDIRECT_CHAIN}"
            ));
            // The application over loopback (localhost, its own pod IP): straight through.
            rules.push(format!("-A {chain} -o lo -m owner ! {owner} -j RETURN"));
            // The proxy's own connections.
            rules.push(format!("-A {chain} -m owner {owner} -j RETURN"));
        }
        rules.push(format!("-A {chain} -d 127.0.0.1/32 -j RETURN"));
        rules.extend(
            self.exclude_outbound_cidrs
                .iter()
                .map(|net| format!("-A {chain} -d {net} -j RETURN")),
        );
        match &self.include_outbound_cidrs {
            Include::All => rules.push(format!("-A {chain} -j {REDIRECT_CHAIN}")),
            Include::Only(nets) => rules.extend(
                nets.iter()
                    .map(|net| format!("-A {chain} -d {net} -j {REDIRECT_CHAIN}")),
            ),
        }
        rules
    }

    /// `iptables-restore --noflush` input for the `nat` table: Portolan's chains declared
    /// (which empties them), their rules, and each jump `present` does not already hold
    /// (`present`: `iptables-save -t nat` output; empty to print every rule).
    pub fn restore_input(&self, present: &str) -> String {
        let mut out = String::from("*nat\n");
        for chain in [
            INBOUND_CHAIN,
            IN_REDIRECT_CHAIN,
            OUTPUT_CHAIN,
            REDIRECT_CHAIN,
        ] {
            let _ = writeln!(out, ":{chain} - [0:0]");
        }
        for rule in self.chain_rules() {
            let _ = writeln!(out, "{rule}");
        }
        let has = |jump: &str| present.lines().any(|l| l.trim_end() == jump);
        for jump in Self::jumps().into_iter().filter(|j| !has(j)) {
            let _ = writeln!(out, "{jump}");
        }
        out.push_str("COMMIT\n");
        out
    }
}

/// `iptables-restore --noflush` input that removes Portolan's rules from the `nat` table
/// `present` (`iptables-save -t nat` output): the jumps it holds, then every Portolan chain it
/// holds, emptied and deleted. Nothing of Portolan's in `present`: an empty commit.
pub fn removal_input(present: &str) -> String {
    let mut out = String::from("*nat\n");
    let lines: Vec<&str> = present.lines().map(str::trim_end).collect();
    for jump in Rules::jumps() {
        if lines.contains(&jump.as_str()) {
            let _ = writeln!(out, "-D{}", &jump["-A".len()..]);
        }
    }
    let chains: Vec<&str> = [
        INBOUND_CHAIN,
        IN_REDIRECT_CHAIN,
        OUTPUT_CHAIN,
        REDIRECT_CHAIN,
    ]
    .into_iter()
    .filter(|c| lines.iter().any(|l| l.starts_with(&format!(":{c} "))))
    .collect();
    // Emptied first: a chain still jumped to by another cannot be deleted.
    for chain in &chains {
        let _ = writeln!(out, "-F {chain}");
    }
    for chain in &chains {
        let _ = writeln!(out, "-X {chain}");
    }
    out.push_str("COMMIT\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mk_rules() -> Rules {
        Rules {
            outbound_port: 15001,
            inbound_port: 15006,
            proxy_uid: 1337,
            proxy_gid: None,
            inbound_ports: Include::All,
            exclude_inbound_ports: vec![],
            exclude_outbound_ports: vec![],
            include_outbound_cidrs: Include::All,
            exclude_outbound_cidrs: vec![],
        }
    }

    #[test]
    fn default_rules_capture_everything_but_the_proxy_and_loopback() {
        let text = mk_rules().restore_input("");
        let expected = "\
*nat
:PORTOLAN_INBOUND - [0:0]
:PORTOLAN_IN_REDIRECT - [0:0]
:PORTOLAN_OUTPUT - [0:0]
:PORTOLAN_REDIRECT - [0:0]
-A PORTOLAN_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006
-A PORTOLAN_REDIRECT -p tcp -j REDIRECT --to-ports 15001
-A PORTOLAN_INBOUND -p tcp --dport 15006 -j RETURN
-A PORTOLAN_INBOUND -p tcp --dport 15001 -j RETURN
-A PORTOLAN_INBOUND -p tcp -j PORTOLAN_IN_REDIRECT
-A PORTOLAN_OUTPUT ! -d 127.0.0.1/32 -o lo -m owner --uid-owner 1337 -j PORTOLAN_IN_REDIRECT
-A PORTOLAN_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN
-A PORTOLAN_OUTPUT -m owner --uid-owner 1337 -j RETURN
-A PORTOLAN_OUTPUT -d 127.0.0.1/32 -j RETURN
-A PORTOLAN_OUTPUT -j PORTOLAN_REDIRECT
-A PREROUTING -p tcp -j PORTOLAN_INBOUND
-A OUTPUT -p tcp -j PORTOLAN_OUTPUT
COMMIT
";
        assert_eq!(text, expected);
    }

    #[test]
    fn exclusions_come_before_the_redirects() {
        let rules = Rules {
            proxy_gid: Some(1337),
            inbound_ports: Include::Only(vec![8080, 9090]),
            exclude_inbound_ports: vec![22],
            exclude_outbound_ports: vec![5432],
            include_outbound_cidrs: Include::Only(vec!["10.0.0.0/8".parse().expect("valid")]),
            exclude_outbound_cidrs: vec!["10.1.0.0/16".parse().expect("valid")],
            ..mk_rules()
        };
        let rules = rules.chain_rules();
        let at = |r: &str| {
            rules
                .iter()
                .position(|x| x == r)
                .unwrap_or_else(|| panic!("{r} missing from {rules:#?}"))
        };
        let in_excluded = at("-A PORTOLAN_INBOUND -p tcp --dport 22 -j RETURN");
        let in_8080 = at("-A PORTOLAN_INBOUND -p tcp --dport 8080 -j PORTOLAN_IN_REDIRECT");
        at("-A PORTOLAN_INBOUND -p tcp --dport 9090 -j PORTOLAN_IN_REDIRECT");
        assert!(in_excluded < in_8080);
        assert!(!rules.contains(&"-A PORTOLAN_INBOUND -p tcp -j PORTOLAN_IN_REDIRECT".into()));
        let port = at("-A PORTOLAN_OUTPUT -p tcp --dport 5432 -j RETURN");
        let gid = at("-A PORTOLAN_OUTPUT -m owner --gid-owner 1337 -j RETURN");
        let excluded = at("-A PORTOLAN_OUTPUT -d 10.1.0.0/16 -j RETURN");
        let included = at("-A PORTOLAN_OUTPUT -d 10.0.0.0/8 -j PORTOLAN_REDIRECT");
        assert!(port < gid && gid < excluded && excluded < included);
    }

    #[test]
    fn jumps_already_there_are_not_added_again() {
        let saved = "*nat\n:OUTPUT ACCEPT [0:0]\n-A PREROUTING -p tcp -j PORTOLAN_INBOUND\n\
                     -A OUTPUT -p tcp -j PORTOLAN_OUTPUT\nCOMMIT\n";
        let text = mk_rules().restore_input(saved);
        assert!(!text.contains("-A OUTPUT"), "{text}");
        assert!(!text.contains("-A PREROUTING"), "{text}");
        // One of two present: only the other is written.
        let text = mk_rules().restore_input("-A OUTPUT -p tcp -j PORTOLAN_OUTPUT\n");
        assert!(!text.contains("-A OUTPUT"), "{text}");
        assert!(
            text.contains("-A PREROUTING -p tcp -j PORTOLAN_INBOUND"),
            "{text}"
        );
    }

    #[test]
    fn removal_deletes_what_is_there_and_nothing_else() {
        let saved = "*nat\n:OUTPUT ACCEPT [0:0]\n:PORTOLAN_OUTPUT - [0:0]\n\
                     :PORTOLAN_REDIRECT - [0:0]\n-A OUTPUT -p tcp -j PORTOLAN_OUTPUT\n\
                     -A PORTOLAN_OUTPUT -j PORTOLAN_REDIRECT\nCOMMIT\n";
        assert_eq!(
            removal_input(saved),
            "*nat\n-D OUTPUT -p tcp -j PORTOLAN_OUTPUT\n-F PORTOLAN_OUTPUT\n\
             -F PORTOLAN_REDIRECT\n-X PORTOLAN_OUTPUT\n-X PORTOLAN_REDIRECT\nCOMMIT\n"
        );
        assert_eq!(
            removal_input("*nat\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"),
            "*nat\nCOMMIT\n"
        );
    }

    #[test]
    fn nothing_included_captures_nothing() {
        let rules = Rules {
            inbound_ports: Include::Only(vec![]),
            include_outbound_cidrs: Include::Only(vec![]),
            ..mk_rules()
        }
        .chain_rules();
        assert!(!rules.iter().any(|r| r.ends_with("-j PORTOLAN_REDIRECT")));
        assert!(!rules.iter().any(
            |r| r.starts_with("-A PORTOLAN_INBOUND") && r.ends_with("-j PORTOLAN_IN_REDIRECT")
        ));
    }
}
