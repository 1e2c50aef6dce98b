import Foundation
import LifeboatCore
import SystemPackage
import Testing

@testable import LifeboatJournal

/// Pins the on-disk format of Docs/formats/journal.md: a segment built with the codec must
/// equal the checked-in fixture byte for byte, and the reader must decode the fixture.
/// Regenerate after a deliberate format change with LIFEBOAT_REGENERATE_FIXTURES=1.
@Suite struct GoldenFixtureTests {
    static let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/journal-v1.seg")

    static func build() -> [UInt8] {
        let group = (0..<16).map { UInt8($0) }
        var bytes = SegmentHeader(groupID: group, firstLSN: LSN(1), createdNanos: 1_700_000_000_000_000_000).encoded()
        bytes += encodeRecord(type: .write, lsn: LSN(1), payload: writePayload(disk: 0, block: 2, data: [UInt8](repeating: 0x5A, count: 4096)))
        bytes += encodeRecord(type: .flush, lsn: LSN(2), payload: [])
        let marker = Marker(kind: .appConsistent, timeNanos: 1_700_000_001_000_000_000, label: "golden", digests: [DiskID(0): Hash128(high: 1, low: 2)])
        bytes += encodeRecord(type: .marker, lsn: LSN(3), payload: marker.encoded())
        bytes += encodeRecord(type: .seal, lsn: LSN(4), payload: [])
        return bytes
    }

    @Test func codecOutputEqualsTheFixture() throws {
        let built = Self.build()
        if ProcessInfo.processInfo.environment["LIFEBOAT_REGENERATE_FIXTURES"] != nil {
            try Data(built).write(to: Self.fixture)
        }
        let fixture = try [UInt8](Data(contentsOf: Self.fixture))
        #expect(fixture == built)
    }

    @Test func readerDecodesTheFixture() throws {
        let fixture = try [UInt8](Data(contentsOf: Self.fixture))
        let scan = try SegmentReader.scan(fixture, path: FilePath(Self.fixture.path))
        #expect(scan.end == .sealed)
        #expect(scan.records.map(\.header.type) == [.write, .flush, .marker, .seal])
        #expect(scan.records.map(\.header.lsn) == [LSN(1), LSN(2), LSN(3), LSN(4)])
        #expect(scan.header.createdNanos == 1_700_000_000_000_000_000)
        // Spot checks of the layout the doc's hex example shows.
        #expect(Array(fixture[0..<8]) == Array("LBJOURNL".utf8))
        #expect(fixture.count == 64 + (24 + 16 + 4096) + 24 + (24 + 14 + 6 + 4 + 20) + 24)
    }
}
