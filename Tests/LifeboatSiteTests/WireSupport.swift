import Foundation
import LifeboatCore
import LifeboatIdentity
import LifeboatJournal
import LifeboatVault
import Logging
import Synchronization
import SystemPackage
import Testing

#if canImport(Glibc)
import Glibc
#endif

@testable import LifeboatWire

/// `vault serve` in this process on loopback (port chosen by the kernel), its log kept: what the
/// wire's own tests talk to with a real `RemoteVaultReplica`, mutual TLS and all.
final class LoopbackVault {
    let home: VaultHome
    let server: VaultServer
    let authority: VaultAuthority
    let log = CapturedLog()

    init(_ dir: String) throws {
        home = try VaultHome(root: FilePath(dir + "/vault"), create: true)
        let log = self.log
        server = try VaultServer(home: home, logger: Logger(label: "vault") { _ in log })
        try server.start(host: "127.0.0.1", port: 0)
        authority = try VaultAuthority.open(vault: home.root, create: true)
    }

    var port: Int { server.boundPort ?? 0 }

    func enroll(_ site: String, port: Int? = nil) throws -> SiteBundle {
        try authority.enroll(site: site, vaultAddress: "lifeboat://127.0.0.1:\(port ?? self.port)", days: 1)
    }

    func stop() { server.stop() }
}

/// A log handler that keeps every message, for tests to read what the vault said.
final class CapturedLog: LogHandler, @unchecked Sendable {
    private let lines = Mutex<[String]>([])
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .info

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        lines.withLock { $0.append("\(event.level) \(event.message)") }
    }

    var text: String { lines.withLock { $0.joined(separator: "\n") } }

    /// Waits up to `seconds` for a line containing `words` (the vault logs on its own threads).
    func waitFor(_ words: String, seconds: Double = 5) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while !text.contains(words) && Date() < deadline { usleep(20_000) }
        return text.contains(words)
    }
}

/// Sealed journal segments of 64 KiB random writes to disk 0 (at most 4 MiB), ~1 MiB each.
func sealedSegments(in dir: String, group: [UInt8], writes: Int) throws -> [(bytes: [UInt8], last: LSN, name: String)] {
    let directory = FilePath(dir + "/journal")
    try FileManager.default.createDirectory(atPath: directory.string, withIntermediateDirectories: true)
    let (journal, _) = try Journal.open(directory: directory, groupID: group, configuration: .init(segmentBytes: 1 << 20))
    for i in 0..<writes {
        let data = randomBytes(64 << 10, seed: UInt64(i))
        _ = try data.withUnsafeBytes { try journal.appendWrite(disk: DiskID(0), firstBlock: BlockIndex(UInt64(i % 64) * 16), data: $0) }
    }
    try journal.sealIfOlder(than: .zero)
    try journal.close()
    var segments: [(bytes: [UInt8], last: LSN, name: String)] = []
    for entry in try JournalDirectory.segments(in: directory) {
        let bytes = try SegmentReader.load(entry.path)
        let scan = try SegmentReader.scan(bytes, path: entry.path)
        if scan.end == .sealed { segments.append((bytes, scan.lastLSN, entry.path.string)) }
    }
    return segments
}

/// A TCP relay on loopback between a site and the vault, one connection at a time, that once
/// the site has sent 64 KiB (the handshake takes a few) either flips a byte inside the next TLS
/// record or sends that record twice: an attacker on the path, tampering or replaying.
final class TamperingRelay: @unchecked Sendable {
    enum Attack { case flipAByte, replayARecord }
    let port: Int
    private let listener: Int32
    private let done = StopFlag()
    private let thread: Thread

    init(to target: Int, attack: Attack) throws {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = Self.loopback(port: 0)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, length) == 0 && getsockname(listener, $0, &length) == 0 }
        }
        guard bound, listen(listener, 4) == 0 else {
            close(listener)
            throw TestFailure("the relay cannot listen")
        }
        self.listener = listener
        port = Int(UInt16(bigEndian: address.sin_port))
        let done = self.done
        thread = Thread {
            while !done.isRaised {
                let client = accept(listener, nil, nil)
                guard client >= 0 else { break }
                let server = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
                var to = Self.loopback(port: target)
                let connected = withUnsafePointer(to: &to) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(server, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
                }
                guard connected else { close(client); close(server); continue }
                let sockets = SocketPair(client, server)
                Thread { Self.pump(from: server, to: client, attack: nil); sockets.oneSideDone() }.start()
                Thread { Self.pump(from: client, to: server, attack: attack); sockets.oneSideDone() }.start()
            }
        }
        thread.start()
    }

    func stop() {
        done.raise()
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
    }

    /// The two sockets of one relayed connection, closed when both directions are done.
    final class SocketPair: Sendable {
        let fds: (Int32, Int32)
        private let left = Mutex(2)
        init(_ a: Int32, _ b: Int32) { fds = (a, b) }
        func oneSideDone() {
            guard left.withLock({ $0 -= 1; return $0 == 0 }) else { return }
            close(fds.0)
            close(fds.1)
        }
    }

    private static func loopback(port: Int) -> sockaddr_in {
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_addr.s_addr = inet_addr("127.0.0.1")
        a.sin_port = UInt16(port).bigEndian
        return a
    }

    /// Copies TLS records from one socket to the other, attacking one record past 64 KiB.
    private static func pump(from: Int32, to: Int32, attack: Attack?) {
        defer {
            shutdown(from, Int32(SHUT_RDWR))
            shutdown(to, Int32(SHUT_RDWR))
        }
        var pending: [UInt8] = []
        var sent = 0
        var attacked = attack == nil
        var chunk = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(from, $0.baseAddress, $0.count) }
            guard n > 0 else { return }
            pending += chunk[0..<n]
            // Whole records only: a 5-byte header (type, version, length) and its payload.
            while pending.count >= 5 {
                let length = Int(pending[3]) << 8 | Int(pending[4])
                guard pending.count >= 5 + length else { break }
                var record = Array(pending[0..<(5 + length)])
                pending.removeFirst(5 + length)
                var out = record
                if !attacked && sent >= 64 << 10 && length > 32 {
                    attacked = true
                    switch attack! {
                    case .flipAByte:
                        record[5 + length / 2] ^= 0x01
                        out = record
                    case .replayARecord:
                        out = record + record
                    }
                }
                var at = 0
                while at < out.count {
                    let n = out[at...].withUnsafeBytes { write(to, $0.baseAddress, $0.count) }
                    guard n > 0 else { return }
                    at += n
                }
                sent += record.count
            }
        }
    }
}
