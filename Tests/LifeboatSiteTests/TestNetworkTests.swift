import Foundation
import LifeboatTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

let canMakeNetworks = geteuid() == 0 && access("/usr/sbin/ip", X_OK) == 0 && access("/usr/sbin/nft", X_OK) == 0

/// The test hosts themselves: reachability, loss, rate and partition do what they say, and
/// nothing is left behind.
@Suite(.serialized, .exclusiveMachineUse, .timeLimit(.minutes(10)),
       .enabled(if: canMakeNetworks, "needs root, iproute2 and nftables (Harness/setup.sh installs them); CI runs it"))
struct TestNetworkTests {
    /// Bytes per second of one TCP transfer of `bytes` from `from` to `to` (python3 on both ends).
    static func transfer(_ net: TestNetwork, from: String, to: String, bytes: Int) throws -> Double {
        let server = Process()
        let argv = net.command(in: to, ["python3", "-c", """
            import socket
            s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("0.0.0.0", 7777)); s.listen(1)
            c, _ = s.accept(); n = 0
            while True:
                b = c.recv(1 << 20)
                if not b: break
                n += len(b)
            print(n)
            """])
        server.executableURL = URL(fileURLWithPath: argv[0])
        server.arguments = Array(argv.dropFirst())
        let out = Pipe()
        server.standardOutput = out
        try server.run()
        defer { if server.isRunning { kill(server.processIdentifier, SIGKILL) } }
        // The client retries until the server listens (a loaded machine starts python slowly);
        // the clock starts at the connection.
        let r = try net.run(in: from, ["python3", "-c", """
            import socket, sys, time
            for _ in range(200):
                try:
                    s = socket.create_connection(('\(net.address(to))', 7777), timeout=30); break
                except ConnectionRefusedError:
                    time.sleep(0.05)
            start = time.monotonic(); s.sendall(b'x' * \(bytes)); s.shutdown(socket.SHUT_WR); s.recv(1); print(time.monotonic() - start)
            """])
        server.waitUntilExit()
        let seconds = Double(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) ?? .infinity
        let received = Int(String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
        guard r.status == 0, received == bytes else { throw TestFailure("transfer failed: sent \(r.status) \(r.stderr), received \(received)") }
        return Double(bytes) / seconds
    }

    @Test func hostsReachEachOtherAndShapingPartitionAndLossDoWhatTheySay() throws {
        let net = try TestNetwork()
        defer { net.cleanup() }
        let vault = try net.addHost("vault")
        try net.addHost("site")
        #expect(try net.run(in: "site", ["ping", "-c", "1", "-W", "2", vault]).status == 0, "the site reaches the vault")
        // Only their own addresses: the host's namespace has no route to this machine's network.
        #expect(try net.run(in: "site", ["ip", "-4", "-o", "addr"]).stdout.contains("10.99."))

        let fast = try Self.transfer(net, from: "site", to: "vault", bytes: 4 << 20)
        try net.shape("site", rateMbit: 16)
        let slow = try Self.transfer(net, from: "site", to: "vault", bytes: 4 << 20)
        #expect(slow < 2.6e6 && slow > 1.0e6, "16 Mbit/s is 2 MB/s: measured \(slow) B/s (unshaped: \(fast))")
        try net.shape("site")

        try net.shape("site", lossPercent: 100)
        #expect(try net.run(in: "site", ["ping", "-c", "1", "-W", "1", vault]).status != 0, "all packets lost")
        try net.shape("site", lossPercent: 50)
        // 50% each way: a ping and its answer both pass 1 time in 4.
        let pings = try net.run(in: "site", ["ping", "-c", "60", "-i", "0.02", "-W", "1", vault]).stdout
        // "60 packets transmitted, 20 received, 66.6667% packet loss, …"
        let lost = pings.split(separator: "\n").first { $0.contains("packet loss") }.flatMap { line in
            line.split(separator: ",").first { $0.contains("packet loss") }?.split(separator: "%").first.flatMap { Double($0.trimmingCharacters(in: .whitespaces)) }
        }
        #expect(lost.map { (55...95).contains($0) } == true, "about 75% lost: \(pings)")
        try net.shape("site", lossPercent: nil)
        #expect(try net.run(in: "site", ["ping", "-c", "1", "-W", "2", vault]).status == 0)

        try net.partition("site", true)
        #expect(try net.run(in: "site", ["ping", "-c", "1", "-W", "1", vault]).status != 0, "partitioned")
        try net.partition("site", false)
        #expect(try net.run(in: "site", ["ping", "-c", "1", "-W", "2", vault]).status == 0, "joined again")

        net.cleanup()
        #expect(TestNetwork.leftovers().isEmpty, "namespaces left: \(TestNetwork.leftovers())")
    }

    /// The delay line: 10 ms each way is a 20 ms round trip, for a host added before it and one
    /// added after; bulk TCP still flows through it; it is gone after cleanup.
    @Test func theDelayLineAddsItsDelayEachWay() throws {
        let net = try TestNetwork()
        defer { net.cleanup() }
        let vault = try net.addHost("vault")
        try net.addHost("site")
        let before = try Self.roundTrip(net, from: "site", to: vault)
        try net.delay(milliseconds: 10)
        try net.addHost("late")
        let delayed = try Self.roundTrip(net, from: "site", to: vault)
        let late = try Self.roundTrip(net, from: "late", to: vault)
        #expect(before < 5 && (19...40).contains(delayed) && (19...40).contains(late), "RTT \(before) ms, then \(delayed) and \(late) ms")
        let rate = try Self.transfer(net, from: "site", to: "vault", bytes: 8 << 20)
        #expect(rate > 5e6, "TCP through the delay line: \(rate) B/s")
        net.cleanup()
        let left = try run(["pgrep", "-f", "lifeboat-delayline lbdelay"])
        #expect(left.status != 0, "the delay line is gone: \(left.stdout)")
    }

    /// The average round trip of 10 pings, in milliseconds.
    static func roundTrip(_ net: TestNetwork, from host: String, to address: String) throws -> Double {
        let out = try net.run(in: host, ["ping", "-c", "10", "-i", "0.05", "-W", "2", address]).stdout
        // "rtt min/avg/max/mdev = 20.1/20.4/21.0/0.2 ms"
        guard let line = out.split(separator: "\n").first(where: { $0.hasPrefix("rtt") }),
              let avg = line.split(separator: "=").last?.split(separator: "/").dropFirst().first.flatMap({ Double($0.trimmingCharacters(in: .whitespaces)) }) else {
            throw TestFailure("no round trip in ping's output: \(out)")
        }
        return avg
    }
}
