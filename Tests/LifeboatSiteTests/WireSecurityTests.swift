import Crypto
import Foundation
import LifeboatCore
import LifeboatIdentity
import LifeboatShipping
import LifeboatTestSupport
import SystemPackage
import Testing
import X509

@testable import LifeboatWire

/// What an attacker on the path or a stale bundle gets from the vault (issue 12, security): the
/// real server and client on loopback, each refusal said in words on both sides.
@Suite(.timeLimit(.minutes(2)))
struct WireSecurityTests {
    /// A site whose certificate has expired is refused in the handshake: the site is told to
    /// enroll again, the vault's log names the peer and why.
    @Test func anExpiredSiteCertificateIsRefusedWithWordsOnBothSides() throws {
        let dir = try testDirectory("wire-expired")
        let vault = try LoopbackVault(dir)
        defer { vault.stop() }
        var bundle = try vault.enroll("late")
        // The same site, its certificate issued by the vault's CA but expired yesterday.
        let caKey = try P256.Signing.PrivateKey(pemRepresentation: try String(contentsOfFile: dir + "/vault/tls/ca.key", encoding: .utf8))
        let key = P256.Signing.PrivateKey()
        let expired = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: Certificate.PublicKey(key.publicKey),
            notValidBefore: Date().addingTimeInterval(-3 * 86400), notValidAfter: Date().addingTimeInterval(-86400),
            issuer: vault.authority.certificate.subject, subject: try DistinguishedName { CommonName("late") }, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                try ExtendedKeyUsage([.clientAuth])
                SubjectAlternativeNames([.uniformResourceIdentifier(SiteBundle.siteURI("late"))])
            },
            issuerPrivateKey: Certificate.PrivateKey(caKey))
        bundle.certificate = try expired.serializeAsPEM().pemString
        bundle.key = key.pemRepresentation
        let refused = #expect(throws: LifeboatError.self) { try RemoteVaultReplica(bundle: bundle).groupID() }
        #expect(refused?.message.contains("the vault refused this site's certificate: it has expired") == true, "\(refused?.message ?? "")")
        #expect(vault.log.waitFor("a client certificate this vault's CA did not issue, or an expired one"), "\(vault.log.text)")
        #expect(vault.log.text.contains("refused a connection from 127.0.0.1"), "\(vault.log.text)")
    }

    /// An attacker between site and vault flips a byte of the TLS stream, or sends a record
    /// again: the vault finds it (the record's tag), says so in its log, closes the connection
    /// and ingests nothing of the segment; the site's call fails and says why; a new connection
    /// not attacked ships the same segment.
    @Test(arguments: [TamperingRelay.Attack.flipAByte, .replayARecord])
    func aTamperedOrReplayedStreamIsRefusedAndNothingOfItIngested(attack: TamperingRelay.Attack) throws {
        let dir = try testDirectory("wire-tamper")
        let vault = try LoopbackVault(dir)
        defer { vault.stop() }
        let relay = try TamperingRelay(to: vault.port, attack: attack)
        defer { relay.stop() }
        let direct = try vault.enroll("alpha")
        var relayed = direct
        relayed.vault = "lifeboat://127.0.0.1:\(relay.port)"
        let honest = try RemoteVaultReplica(bundle: direct)
        defer { honest.close() }
        let group = [UInt8](repeating: 0xcd, count: 16)
        let segments = try sealedSegments(in: dir, group: group, writes: 20)
        try #require(!segments.isEmpty)
        let empty = dir + "/empty.img"
        try #require(FileManager.default.createFile(atPath: empty, contents: nil))
        try honest.addDisk(group: group.map { String(format: "%02x", $0) }.joined(), id: DiskID(0), name: "d0", sizeBytes: 4 << 20,
                           initialContent: FilePath(empty), progress: { _ in })

        let attacked = try RemoteVaultReplica(bundle: relayed)
        defer { attacked.close() }
        #expect(try attacked.heldThrough() == LSN(0), "the handshake and a small request pass the relay untouched")
        let prepared = try attacked.prepare(segment: segments[0].bytes)
        let failed = #expect(throws: LifeboatError.self) { try attacked.ship(prepared, name: segments[0].name) }
        // The vault closes at once on a record that fails its tag: the site sees the cut.
        #expect(failed?.message.contains("tampered with or replayed") == true || failed?.message.contains("the connection was cut without TLS's close") == true,
                "\(failed?.message ?? "")")
        #expect(vault.log.waitFor("a tampered or replayed TLS stream"), "\(vault.log.text)")
        #expect(try honest.heldThrough() == LSN(0), "nothing of the attacked segment was ingested")
        #expect(try honest.ship(prepared, name: segments[0].name) == segments[0].last)
    }
}
