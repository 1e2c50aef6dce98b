import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Test hosts for what crosses a network (issue 12 and after): each host a network namespace
/// joined by a veth pair to one router namespace (IP forwarding on), so that every host reaches
/// every other through a link of its own that a test can shape:
///
/// ```
/// host A 10.99.1.2 ── veth ── 10.99.1.1 ┐
///                                        router (forwarding; nftables for loss)
/// host B 10.99.2.2 ── veth ── 10.99.2.1 ┘
/// ```
///
/// Found on this machine kind (kernel 6.18, no modules): `tc qdisc netem` does not exist
/// ("Specified qdisc kind is unknown"), nor fq_codel or sfq; `tbf` and `htb` do. So: the rate with
/// tbf, random loss with nftables (`numgen random`), a partition by taking the link down, and a
/// fixed delay with a user-space delay line on the router (`delay`, `lifeboat-delayline`).
/// Namespaces are named with the network's tag and removed by `cleanup` (their veths go with
/// them; the delay line is killed).
public final class TestNetwork {
    public let tag: String
    public private(set) var hosts: [String: Int] = [:]
    private var loss: [String: Int] = [:]
    private var router: String { "lbr-\(tag)" }
    private var delayLine: Process?

    public init() throws {
        tag = String(UInt32.random(in: 0...UInt32.max), radix: 36)
        try ip(["netns", "add", router])
        try netns(router, ["sysctl", "-qw", "net.ipv4.ip_forward=1"])
        try netns(router, ["ip", "link", "set", "lo", "up"])
        try netns(router, ["nft", "add table inet lifeboat; add chain inet lifeboat forward { type filter hook forward priority 0; }"])
    }

    public func namespace(_ host: String) -> String { "lbh-\(tag)-\(host)" }

    /// The host's address.
    public func address(_ host: String) -> String { "10.99.\(hosts[host] ?? 0).2" }

    /// Adds a host: its namespace, its link to the router, a default route through it.
    @discardableResult
    public func addHost(_ name: String) throws -> String {
        let n = hosts.count + 1
        precondition(n < 250, "at most 249 test hosts")
        hosts[name] = n
        let ns = namespace(name)
        try ip(["netns", "add", ns])
        try ip(["link", "add", "lb\(tag)h\(n)", "netns", ns, "type", "veth", "peer", "name", "lb\(tag)r\(n)", "netns", router])
        try netns(ns, ["ip", "link", "set", "lo", "up"])
        try netns(ns, ["ip", "link", "set", "lb\(tag)h\(n)", "name", "eth0"])
        try netns(ns, ["ip", "addr", "add", "10.99.\(n).2/24", "dev", "eth0"])
        try netns(ns, ["ip", "link", "set", "eth0", "up"])
        try netns(ns, ["ip", "route", "add", "default", "via", "10.99.\(n).1"])
        try netns(router, ["ip", "addr", "add", "10.99.\(n).1/24", "dev", "lb\(tag)r\(n)"])
        try netns(router, ["ip", "link", "set", "lb\(tag)r\(n)", "up"])
        if delayLine != nil { try netns(router, ["ip", "rule", "add", "iif", "lb\(tag)r\(n)", "lookup", "100"]) }
        return address(name)
    }

    /// Shapes the host's link both ways: a rate (tbf) and random loss in percent (nftables, on
    /// what the router forwards to and from the host). nil removes that shaping.
    public func shape(_ host: String, rateMbit: Int? = nil, lossPercent: Int? = nil) throws {
        let n = try index(host)
        for (ns, dev) in [(namespace(host), "eth0"), (router, "lb\(tag)r\(n)")] {
            _ = try? netns(ns, ["tc", "qdisc", "del", "dev", dev, "root"])
            if let rateMbit {
                try netns(ns, ["tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", "\(rateMbit)mbit", "burst", "64kb", "latency", "400ms"])
            }
        }
        loss[host] = lossPercent
        try netns(router, ["nft", "flush chain inet lifeboat forward"])
        for (name, percent) in loss {
            let i = try index(name)
            // numgen random mod 100 < p: p packets in 100, either way (nft takes 0-99 there).
            let chance = percent >= 100 ? "" : "numgen random mod 100 < \(percent) "
            for side in ["saddr", "daddr"] {
                try netns(router, ["nft", "add rule inet lifeboat forward ip \(side) 10.99.\(i).0/24 \(chance)drop"])
            }
        }
    }

    /// Delays every packet the router forwards by `milliseconds` (each way: the round trip
    /// between two hosts gains twice that). What the hosts send is routed into a TUN device,
    /// held there by `lifeboat-delayline`, and forwarded when it comes out. Once per network.
    public func delay(milliseconds: Int) throws {
        precondition(delayLine == nil, "one delay per network")
        let tun = "lbdelay"
        try netns(router, ["ip", "tuntap", "add", "dev", tun, "mode", "tun"])
        try netns(router, ["ip", "link", "set", tun, "up"])
        // Packets come back out of the TUN device with the hosts' source addresses.
        for key in ["all", "default", tun] { try netns(router, ["sysctl", "-qw", "net.ipv4.conf.\(key).rp_filter=0"]) }
        for (_, n) in hosts { try netns(router, ["ip", "rule", "add", "iif", "lb\(tag)r\(n)", "lookup", "100"]) }
        try netns(router, ["ip", "route", "add", "default", "dev", tun, "table", "100"])
        let line = Process()
        let argv = ["/usr/bin/nsenter", "--net=/run/netns/" + router, "--", siblingBinary("lifeboat-delayline"), tun, String(milliseconds)]
        line.executableURL = URL(fileURLWithPath: argv[0])
        line.arguments = Array(argv.dropFirst())
        line.standardOutput = FileHandle.nullDevice
        try line.run()
        delayLine = line
    }

    /// Cuts the host off (its link down) or joins it again.
    public func partition(_ host: String, _ cut: Bool) throws {
        try netns(namespace(host), ["ip", "link", "set", "eth0", cut ? "down" : "up"])
        if !cut { try netns(namespace(host), ["ip", "route", "replace", "default", "via", "10.99.\(try index(host)).1"]) }
    }

    /// Runs a command in the host's network namespace to completion.
    @discardableResult
    public func run(in host: String, _ argv: [String]) throws -> CommandResult {
        try LifeboatTestSupport.run(command(in: host, argv))
    }

    /// The argv that runs `argv` in the host's network namespace (for a background process).
    /// `nsenter --net`, not `ip netns exec`: the latter also makes a mount namespace of its own,
    /// which would hide a FUSE mount made there (protect's) from the test.
    public func command(in host: String, _ argv: [String]) -> [String] {
        ["/usr/bin/nsenter", "--net=/run/netns/" + namespace(host), "--"] + argv
    }

    /// Removes every namespace of this network (processes still inside are the caller's to stop).
    public func cleanup() {
        if let line = delayLine {
            line.terminate()
            line.waitUntilExit()
            delayLine = nil
        }
        for host in hosts.keys { _ = try? ip(["netns", "del", namespace(host)]) }
        _ = try? ip(["netns", "del", router])
        hosts = [:]
    }

    /// The namespaces of any TestNetwork left on the machine (a test checks there are none).
    public static func leftovers() -> [String] {
        let out = (try? LifeboatTestSupport.run(["/usr/sbin/ip", "netns", "list"]))?.stdout ?? ""
        return out.split(separator: "\n").map { String($0.split(separator: " ").first ?? "") }.filter { $0.hasPrefix("lbr-") || $0.hasPrefix("lbh-") }
    }

    private func index(_ host: String) throws -> Int {
        guard let n = hosts[host] else { throw TestFailure("no test host '\(host)'") }
        return n
    }

    private func ip(_ args: [String]) throws {
        try check(LifeboatTestSupport.run(["/usr/sbin/ip"] + args))
    }

    private func netns(_ ns: String, _ argv: [String]) throws {
        try check(LifeboatTestSupport.run(["/usr/sbin/ip", "netns", "exec", ns] + argv))
    }
}
