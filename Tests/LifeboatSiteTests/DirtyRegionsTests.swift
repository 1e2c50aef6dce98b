import Foundation
import LifeboatCore
import LifeboatSite
import SystemPackage
import Testing

/// The dirty-region map (`state/dirty-regions`, Docs/formats/dirty-regions.md): the fixture is
/// the format document's worked example, byte for byte, and damage is refused naming its offset.
@Suite struct DirtyRegionsTests {
    static let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/dirty-regions-v1")

    /// The worked example: disk 0 of 4 MiB with regions 0 and 2 dirty, disk 1 of 9 MiB with region 8.
    static func example() -> DirtyRegions {
        var map = DirtyRegions(disks: [(DiskID(0), 1024), (DiskID(1), 2304)], gapAfter: LSN(41))
        map.droppedThrough = LSN(97)
        map.announced = true
        map.mark(disk: DiskID(0), first: BlockIndex(0), count: 1)
        map.mark(disk: DiskID(0), first: BlockIndex(600), count: 10)  // region 2
        map.mark(disk: DiskID(1), first: BlockIndex(2300), count: 4)  // region 8, the last
        return map
    }

    @Test func theFixtureIsTheWorkedExample() throws {
        let bytes = Array(try Data(contentsOf: Self.fixture))
        let decoded = try DirtyRegions.decode(bytes, path: FilePath("dirty-regions-v1"))
        #expect(decoded == Self.example())
        #expect(decoded.regions.map { "\($0.disk.rawValue):\($0.region)" } == ["0:0", "0:2", "1:8"])
        #expect(Self.example().encoded() == bytes)
    }

    @Test func marksOutsideTheDisksAreRefusedAndRegionsSpanTheirBlocks() {
        var map = DirtyRegions(disks: [(DiskID(3), 512)], gapAfter: .zero)
        let unknownDisk = map.mark(disk: DiskID(4), first: BlockIndex(0), count: 1)
        let pastTheEnd = map.mark(disk: DiskID(3), first: BlockIndex(510), count: 3)
        let acrossTwo = map.mark(disk: DiskID(3), first: BlockIndex(255), count: 2)
        #expect(!unknownDisk && !pastTheEnd)
        #expect(acrossTwo, "a write across two regions")
        #expect(map.regions.map(\.region) == [0, 1])
        #expect(map.regionCount == 2)
    }

    @Test func damageIsRefusedNamingTheOffset() throws {
        let good = Array(try Data(contentsOf: Self.fixture))
        func refusal(_ bytes: [UInt8]) -> LifeboatError? {
            #expect(throws: LifeboatError.self) { _ = try DirtyRegions.decode(bytes, path: FilePath("m")) }
        }
        var flipped = good
        flipped[48] ^= 0x02  // disk 0's bitmap
        #expect(refusal(flipped)?.message.contains("checksum mismatch") == true)
        #expect(refusal(Array(good.prefix(20)))?.message.contains("shorter than") == true)
        // Re-checksummed damage: each field's own check.
        func resealed(_ change: (inout [UInt8]) -> Void) -> [UInt8] {
            var b = Array(good.dropLast(4))
            change(&b)
            return b + withUnsafeBytes(of: CRC32C.of(b).littleEndian, Array.init)
        }
        let regionSize = resealed { $0[13] = 2 }, dropped = resealed { $0[24] = 0 }
        let pastTheEnd = resealed { $0[48] = 0x15 }, outOfOrder = resealed { $0[49] = 0 }
        #expect(refusal(regionSize)?.offset == 12, "region size")
        #expect(refusal(dropped)?.offset == 24, "dropped before the gap")
        #expect(refusal(pastTheEnd)?.message.contains("past its 4") == true, "a bit past disk 0's last region")
        #expect(refusal(outOfOrder)?.message.contains("out of order") == true, "disk 1 named 0 again")
    }
}
