import Foundation
import LifeboatCore
import LifeboatIdentity
import LifeboatJournal
import LifeboatShipping
import LifeboatTestSupport
import LifeboatVault
import LifeboatWireFormat
import Logging
import NIOCore
import NIOEmbedded
import SystemPackage
import Testing
import X509
import Crypto

#if canImport(Glibc)
import Glibc
#endif

@testable import LifeboatWire

/// The wire's frames and the vault service's refusals, without a network.
@Suite struct WireTests {
    @Test func framesRoundTripAndBadLengthsAreRefused() throws {
        let frame = WireFrame(header: Array(#"{"op":"pointAt","lsn":42,"note":"x"}"#.utf8), body: [1, 2, 3])
        let bytes = frame.encoded()
        #expect(Array(bytes.prefix(8)) == [0, 0, 0, 43, 0, 0, 0, 36], "4 + 36 + 3 bytes follow; the header is 36")
        #expect(try WireFrame.decode(bytes) == frame)
        #expect(throws: LifeboatError.self) { try WireFrame.decode(Array(bytes.dropLast())) }
        var lying = bytes
        lying[7] = 200  // a header longer than the frame
        let e = #expect(throws: LifeboatError.self) { try WireFrame.decode(lying) }
        #expect(e?.message.contains("header length 200 does not fit") == true)
    }

    /// The connection's decoder: frames cut from a stream that arrives in pieces, header and
    /// body apart; a header longer than its frame ends the connection with the reason.
    @Test func theDecoderCutsFramesFromPiecesAndRefusesALyingHeader() throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(WireFrameDecoder()))
        let first = WireFrame(header: Array(#"{"op":"ship"}"#.utf8), body: Array(repeating: 7, count: 100_000))
        let second = WireFrame(header: Array(#"{"op":"state"}"#.utf8))
        let stream = first.encoded() + second.encoded()
        for piece in stride(from: 0, to: stream.count, by: 4093) {
            try channel.writeInbound(channel.allocator.buffer(bytes: stream[piece..<min(stream.count, piece + 4093)]))
        }
        #expect(try channel.readInbound(as: WireFrame.self) == first)
        #expect(try channel.readInbound(as: WireFrame.self) == second)
        var lying = second.encoded()
        lying[7] = 200
        let e = #expect(throws: LifeboatError.self) { try channel.writeInbound(channel.allocator.buffer(bytes: lying)) }
        #expect(e?.message.contains("header length 200 does not fit") == true)
        _ = try? channel.finish()
    }

    @Test func theServiceRefusesUnknownOpsAndGroupsThatAreNotIds() throws {
        let dir = try testDirectory("wire-service")
        let service = try makeService(dir + "/vault")
        let unknown = #expect(throws: LifeboatError.self) { try service.handle(WireRequest(op: "erase"), body: [], site: "s") }
        #expect(unknown?.message.contains("unknown op 'erase'") == true)
        var escape = WireRequest(op: "addDiskBegin")
        escape.group = "../../../../tmp/owned"
        escape.disk = 0
        escape.sizeBytes = 1 << 20
        let refused = #expect(throws: LifeboatError.self) { try service.handle(escape, body: [], site: "s") }
        #expect(refused?.message.contains("is not a protection group id") == true)
        #expect(!FileManager.default.fileExists(atPath: "/tmp/owned-0.part"))
        var missing = WireRequest(op: "pointAt")
        missing.lsn = nil
        let noLSN = #expect(throws: LifeboatError.self) { try service.handle(missing, body: [], site: "s") }
        #expect(noLSN?.message.contains("field 'lsn' is missing") == true)
    }

    @Test func eachSiteReachesOnlyItsOwnGroup() throws {
        let dir = try testDirectory("wire-sites")
        let service = try makeService(dir + "/vault")
        let groupA = String(repeating: "a", count: 32), groupB = String(repeating: "b", count: 32)
        try addEmptyDisk(service, site: "alpha", group: groupA, name: "data")
        try addEmptyDisk(service, site: "beta", group: groupB, name: "logs")
        let home = try VaultHome(root: FilePath(dir + "/vault"))
        #expect(try home.siteNames() == ["alpha", "beta"])
        #expect(try home.siteGroup("alpha").disks().map(\.name) == ["data"])
        #expect(try home.siteGroup("beta").disks().map(\.name) == ["logs"])
        // Each site's state is its own group's, whatever group it names.
        #expect(try service.handle(WireRequest(op: "state"), body: [], site: "beta").0.group == groupB)
        // Beta naming alpha's group is refused: its requests only ever open sites/beta.
        let crossed = #expect(throws: LifeboatError.self) { try addEmptyDisk(service, site: "beta", group: groupA, name: "stolen") }
        #expect(crossed?.message.contains("belongs to protection group \(groupB)") == true)
        #expect(try home.siteGroup("alpha").disks().map(\.name) == ["data"])
        // Readers: two groups need --site; one named is read; an unknown one is named with the known.
        let ambiguous = #expect(throws: LifeboatError.self) { try home.group(site: nil) }
        #expect(ambiguous?.message.contains("2 sites (alpha, beta): name one with --site NAME") == true)
        #expect(try home.group(site: "beta").groupID() == groupB)
        let unknown = #expect(throws: LifeboatError.self) { try home.group(site: "gamma") }
        #expect(unknown?.message.contains("no group of site 'gamma' (it has: alpha, beta)") == true)
        #expect(throws: LifeboatError.self) { try home.group(site: "../alpha") }
    }

    @Test func aLocalVaultIsNotServed() throws {
        let dir = try testDirectory("wire-local")
        _ = try Vault(root: FilePath(dir + "/vault"), create: true)
        let e = #expect(throws: LifeboatError.self) { try VaultServer(home: try VaultHome(root: FilePath(dir + "/vault")), logger: Logger(label: "test")) }
        #expect(e?.message.contains("holds a site's own group at its root") == true)
    }

    /// Every certificate the vault's CA issued chains to it, a site's too: a server presenting a
    /// site's certificate (an enrolled site posing as the vault) is refused by the client — by its
    /// key usage (client authentication only) — and so is one of the CA for servers that is not
    /// the vault's (no `lifeboat:vault` URI); the vault's own is not (openssl s_server plays the
    /// server, on loopback).
    @Test(.enabled(if: access("/usr/bin/openssl", X_OK) == 0, "needs openssl (Harness/setup.sh installs it)"), .timeLimit(.minutes(1)))
    func aSiteCertificatePosingAsTheVaultIsRefused() throws {
        let dir = try testDirectory("wire-impostor")
        let home = try VaultHome(root: FilePath(dir + "/vault"), create: true)
        let authority = try VaultAuthority.open(vault: home.root, create: true)
        let impostor = try authority.enroll(site: "impostor", vaultAddress: nil, days: 1)
        let (vaultCertificate, vaultKey) = try authority.serverIdentity()
        // A server certificate of the vault's CA without the vault's URI, made with the CA's key.
        let caKey = try P256.Signing.PrivateKey(pemRepresentation: try String(contentsOfFile: dir + "/vault/tls/ca.key", encoding: .utf8))
        let otherKey = P256.Signing.PrivateKey()
        let other = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: Certificate.PublicKey(otherKey.publicKey),
            notValidBefore: Date().addingTimeInterval(-60), notValidAfter: Date().addingTimeInterval(3600),
            issuer: authority.certificate.subject, subject: try DistinguishedName { CommonName("not the vault") }, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                try ExtendedKeyUsage([.serverAuth])
                SubjectAlternativeNames([.uniformResourceIdentifier("lifeboat:site:impostor")])
            },
            issuerPrivateKey: Certificate.PrivateKey(caKey))
        let cases: [(String, String, String, String?)] = [
            ("site", impostor.certificate, impostor.key, "CERTIFICATE_VERIFY_FAILED"),
            ("server-not-vault", try other.serializeAsPEM().pemString, otherKey.pemRepresentation, "that is not the vault's"),
            ("vault", vaultCertificate, vaultKey, nil),
        ]
        for (name, certificate, key, refusal) in cases {
            let port = try Self.freeLoopbackPort()
            try certificate.write(toFile: dir + "/\(name).pem", atomically: true, encoding: .utf8)
            try key.write(toFile: dir + "/\(name).key", atomically: true, encoding: .utf8)
            try impostor.ca.write(toFile: dir + "/ca.pem", atomically: true, encoding: .utf8)
            let server = Process()
            server.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
            server.arguments = ["s_server", "-accept", "127.0.0.1:\(port)", "-cert", dir + "/\(name).pem", "-key", dir + "/\(name).key",
                                "-CAfile", dir + "/ca.pem", "-Verify", "1", "-tls1_3", "-quiet"]
            server.standardOutput = FileHandle.nullDevice
            server.standardError = FileHandle.nullDevice
            try server.run()
            defer {
                kill(server.processIdentifier, SIGKILL)  // the runner's blocked signals are inherited: SIGTERM may not reach it
                server.waitUntilExit()
            }
            let victim = try authority.enroll(site: "victim-\(name)", vaultAddress: "lifeboat://127.0.0.1:\(port)", days: 1)
            var message = ""
            for _ in 0..<50 {
                do { _ = try RemoteVaultReplica(bundle: victim).groupID() } catch let e as LifeboatError { message = e.message }
                if !message.contains("Connection refused") { break }
                usleep(100_000)
            }
            if let refusal {
                #expect(message.contains(refusal), "\(name): \(message)")
            } else {
                #expect(!message.contains("CERTIFICATE_VERIFY_FAILED") && !message.contains("that is not the vault's"), "\(name): \(message)")
            }
        }
    }

    /// The shipper's window: a segment sent before the answer to the one before is taken off the
    /// wire while that one is ingested, and the answers come in order, each with what the vault
    /// holds after its own segment. A refused request ends the connection: the segment sent behind
    /// it is not run (it would have followed a gap the site does not know of), and the vault holds
    /// no more than before. (The real server and client on loopback, mutual TLS.)
    @Test(.timeLimit(.minutes(2)))
    func segmentsSentAheadOfTheirAnswersAreIngestedInOrderAndARefusalStopsTheRest() throws {
        let dir = try testDirectory("wire-window")
        let vault = try LoopbackVault(dir)
        defer { vault.stop() }
        let replica = try RemoteVaultReplica(bundle: try vault.enroll("alpha"))
        defer { replica.close() }
        // Four sealed segments of 64 KiB writes to a 4 MiB disk.
        let group = [UInt8](repeating: 0xab, count: 16)
        let segments = try sealedSegments(in: dir, group: group, writes: 60)
        try #require(segments.count >= 4)
        let empty = dir + "/empty.img"
        try #require(FileManager.default.createFile(atPath: empty, contents: nil))
        try replica.addDisk(group: group.map { String(format: "%02x", $0) }.joined(), id: DiskID(0), name: "d0", sizeBytes: 4 << 20,
                            initialContent: FilePath(empty), progress: { _ in })
        func send(_ i: Int) throws -> PendingShip { try replica.send(try replica.prepare(segment: segments[i].bytes), name: segments[i].name) }

        let first = try send(0), second = try send(1)
        #expect(try first.held() == segments[0].last)
        #expect(try second.held() == segments[1].last)

        let gap = try send(3), behind = try send(2)
        let refused = #expect(throws: LifeboatError.self) { try gap.held() }
        #expect(refused?.message.contains("holds LSNs up to \(segments[1].last)") == true, "\(refused?.message ?? "")")
        let notRun = #expect(throws: LifeboatError.self) { try behind.held() }
        #expect(notRun?.message.contains("not run") == true || notRun?.message.contains("closed the connection") == true, "\(notRun?.message ?? "")")
        usleep(500_000)  // a segment run behind the refusal would be ingested (1 MiB: milliseconds) by now
        #expect(try replica.heldThrough() == segments[1].last, "nothing behind the refusal was ingested")

        // A new connection goes on from there, in order.
        #expect(try replica.ship(try replica.prepare(segment: segments[2].bytes), name: segments[2].name) == segments[2].last)
        #expect(try replica.ship(try replica.prepare(segment: segments[3].bytes), name: segments[3].name) == segments[3].last)
    }

    /// A port nothing listens on now (the kernel's choice for port 0), for a server started next.
    static func freeLoopbackPort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound else { throw TestFailure("no free loopback port") }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    private func makeService(_ path: String) throws -> VaultService {
        let home = try VaultHome(root: FilePath(path), create: true)
        return VaultService(home: home, authority: try VaultAuthority.open(vault: home.root, create: true), logger: Logger(label: "test"))
    }

    /// The initial replication of an all-zero 1 MiB disk (no chunk: holes are not sent).
    private func addEmptyDisk(_ service: VaultService, site: String, group: String, name: String) throws {
        var begin = WireRequest(op: "addDiskBegin")
        begin.group = group
        begin.disk = 0
        begin.sizeBytes = 1 << 20
        _ = try service.handle(begin, body: [], site: site)
        var end = begin
        end.op = "addDiskEnd"
        end.name = name
        _ = try service.handle(end, body: [], site: site)
    }
}
