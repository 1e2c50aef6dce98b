import Crypto
import Foundation
import LifeboatCore
import LifeboatJournal
import SystemPackage
import Testing

@testable import LifeboatVault

/// Pins the sealed layer (layer version 2) of Docs/formats/vault.md, "Encryption at rest": the
/// journal's golden segment ingested into an encrypted vault with the doc's example key and
/// frame salt equals the checked-in fixture byte for byte, opens with that key, and the doc's
/// figures (frame key, AAD, the sealed frame) are the fixture's. Regenerate with
/// LIFEBOAT_REGENERATE_FIXTURES=1 after a deliberate format change.
@Suite struct SealedLayerFixtureTests {
    static let fixture = LayerFixtureTests.here.appendingPathComponent("Fixtures/layer-v2-sealed.layer")
    static let keyFile = LayerFixtureTests.here.appendingPathComponent("Fixtures/example.key")
    /// The doc's example salt: 0x80 … 0x8f.
    static let salt = [UInt8](0x80...0x8f)

    static func key() throws -> VaultKey { try VaultKey.load(FilePath(keyFile.path)) }

    static func sealer() throws -> FrameSealer { FrameSealer(key: try key(), groupID: Array(0..<16), salt: { salt }) }

    static func build() throws -> [UInt8] {
        let raw = try [UInt8](Data(contentsOf: LayerFixtureTests.segment))
        let scan = try SegmentReader.scan(raw, path: FilePath(LayerFixtureTests.segment.path))
        return try raw.withUnsafeBytes { try LayerWriter.build(scan: scan, segment: $0, compressor: ZstdCompressor(), sealer: try sealer()) }.bytes
    }

    @Test func ingestIntoAnEncryptedVaultEqualsTheFixture() throws {
        chmod(Self.keyFile.path, 0o600)  // git keeps 0644
        let built = try Self.build()
        if ProcessInfo.processInfo.environment["LIFEBOAT_REGENERATE_FIXTURES"] != nil {
            try Data(built).write(to: Self.fixture)
            print(LayerFixtureTests.hexDump(built))
        }
        #expect(try [UInt8](Data(contentsOf: Self.fixture)) == built)
    }

    @Test func theFixtureOpensWithTheExampleKeyAndNotWithout() throws {
        chmod(Self.keyFile.path, 0o600)
        let path = FilePath(Self.fixture.path)
        let layer = try LayerReader(path: path, sealer: try Self.sealer())
        #expect(layer.header.sealed)
        let entry = layer.entry(0)
        #expect(entry.frameOffset == 64 && entry.frameLength == 23 + FrameSealer.overhead)
        var out = [UInt8](repeating: 0, count: 4096)
        var scratch: [UInt8] = []
        try out.withUnsafeMutableBytes { try layer.readBlock(entry, into: $0, scratch: &scratch, decompressor: ZstdDecompressor()) }
        #expect(out == [UInt8](repeating: 0x5A, count: 4096))
        try layer.verifyAll()
        #expect(throws: LifeboatError.self) { _ = try LayerReader(path: path, sealer: nil) }
        // Another group's sealer (the AAD names the group) cannot open the frame.
        let stranger = try LayerReader(path: path, sealer: FrameSealer(key: try Self.key(), groupID: [UInt8](repeating: 9, count: 16)))
        #expect(throws: LifeboatError.self) { try out.withUnsafeMutableBytes { try stranger.readBlock(entry, into: $0, scratch: &scratch, decompressor: ZstdDecompressor()) } }
    }

    /// The doc's step-by-step figures, computed here with swift-crypto from the key file.
    @Test func theDocsSealedFrameFiguresAreTheFixtures() throws {
        chmod(Self.keyFile.path, 0o600)
        let key = try Self.key()
        let frameKey = key.derive(salt: Self.salt, info: FrameSealer.info).withUnsafeBytes { Hex.string(Array($0)) }
        let bytes = try [UInt8](Data(contentsOf: Self.fixture))
        let salt = Hex.string(Array(bytes[64..<80])), ciphertext = Hex.string(Array(bytes[80..<103])), tag = Hex.string(Array(bytes[103..<119]))
        let doc = try String(contentsOf: LayerFixtureTests.doc, encoding: .utf8)
        #expect(doc.contains("key id     \(key.id)"), "key id \(key.id)")
        #expect(doc.contains("frame key  \(frameKey)"), "frame key \(frameKey)")
        #expect(salt == Hex.string(Self.salt))
        #expect(doc.contains("\n\(salt) ") && doc.contains("\n\(ciphertext) ") && doc.contains("\n\(tag) "), "sealed frame \(salt) \(ciphertext) \(tag)")
    }
}
