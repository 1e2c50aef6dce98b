import Foundation
import LifeboatCore
import LifeboatJournal
import SystemPackage
import Testing

@testable import LifeboatVault

/// Pins the layer format of Docs/formats/vault.md: the layer ingest makes from the journal's
/// golden segment must equal the checked-in fixture byte for byte, the reader must decode it,
/// and the doc's worked example must be its hex dump. Regenerate after a deliberate format
/// change with LIFEBOAT_REGENERATE_FIXTURES=1 (then paste `hexDump` into the doc).
@Suite struct LayerFixtureTests {
    static let here = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    static let fixture = here.appendingPathComponent("Fixtures/layer-v1.layer")
    static let segment = here.appendingPathComponent("../LifeboatJournalTests/Fixtures/journal-v1.seg")
    static let doc = here.appendingPathComponent("../../Docs/formats/vault.md")

    static func build() throws -> [UInt8] {
        let raw = try [UInt8](Data(contentsOf: segment))
        let scan = try SegmentReader.scan(raw, path: FilePath(segment.path))
        return try raw.withUnsafeBytes { try LayerWriter.build(scan: scan, segment: $0, compressor: ZstdCompressor()) }.bytes
    }

    /// `xxd`-style lines: offset, 16 bytes in hex.
    static func hexDump(_ bytes: [UInt8]) -> String {
        stride(from: 0, to: bytes.count, by: 16).map { start in
            let line = bytes[start..<min(start + 16, bytes.count)].map { String(format: "%02x", $0) }.joined(separator: " ")
            return String(format: "%08x: ", start) + line
        }.joined(separator: "\n")
    }

    @Test func ingestOfTheGoldenSegmentEqualsTheFixture() throws {
        let built = try Self.build()
        if ProcessInfo.processInfo.environment["LIFEBOAT_REGENERATE_FIXTURES"] != nil {
            try Data(built).write(to: Self.fixture)
            print(Self.hexDump(built))
        }
        #expect(try [UInt8](Data(contentsOf: Self.fixture)) == built)
    }

    @Test func readerDecodesTheFixture() throws {
        let layer = try LayerReader(path: FilePath(Self.fixture.path), sealer: nil)
        #expect(layer.header.groupID == Array(0..<16))
        #expect(layer.header.firstLSN == LSN(1) && layer.header.lastLSN == LSN(4))
        #expect(layer.header.entryCount == 1)
        let entry = layer.entry(0)
        #expect(entry.disk == DiskID(0) && entry.block == BlockIndex(2) && entry.lsn == LSN(1) && entry.blockInFrame == 0)
        #expect(entry.frameOffset == 64)
        let found = try #require(layer.lookup(disk: DiskID(0), block: BlockIndex(2), atOrBefore: LSN(4)))
        var out = [UInt8](repeating: 0, count: 4096)
        var scratch: [UInt8] = []
        try out.withUnsafeMutableBytes { try layer.readBlock(found, into: $0, scratch: &scratch, decompressor: ZstdDecompressor()) }
        #expect(out == [UInt8](repeating: 0x5A, count: 4096))
        try layer.verifyAll()
    }

    @Test func theDocsWorkedExampleIsTheFixturesHexDump() throws {
        let text = try String(contentsOf: Self.doc, encoding: .utf8)
        let section = try #require(text.range(of: "## Worked example")).upperBound
        let start = try #require(text.range(of: "```\n", range: section..<text.endIndex)).upperBound
        let end = try #require(text.range(of: "\n```", range: start..<text.endIndex)).lowerBound
        // The doc's lines may carry comments after two spaces: compare the dump part.
        let documented = text[start..<end].split(separator: "\n").map { line in
            String(line.prefix(58)).trimmingCharacters(in: .whitespaces)
        }.joined(separator: "\n")
        #expect(documented == Self.hexDump(try [UInt8](Data(contentsOf: Self.fixture))))
    }

    /// The Bloom hash test vector of vault.md: (disk 0, block 2).
    @Test func bloomHashesMatchTheDocsTestVector() {
        let (h1, h2) = LayerBloom.hashes(DiskID(0), BlockIndex(2))
        #expect(h1 == 0x9758_35de_1c97_56ce)
        #expect(h2 == 0x1c97_56ce_9758_35df)
        let words = LayerBloom.build([(DiskID(0), BlockIndex(2))])
        #expect(words == [0x0000_2a00_0000_5500])  // bits 8, 10, 12, 14, 41, 43, 45
    }
}
