import Crypto
import Foundation
import LifeboatCore
import LifeboatJournal
import SystemPackage
import LifeboatTestSupport
import Testing

@testable import LifeboatVault

#if canImport(Glibc)
import Glibc
#endif

/// Encryption at rest (decision 0011): layers' frames and bases' blocks sealed with AES-256-GCM
/// under a key kept outside the vault; the same reads as a plain vault's, no plaintext on disk,
/// damage and a missing or wrong key each a clear error.
@Suite struct EncryptionTests {
    static let now = Date(timeIntervalSince1970: 1_700_000_000 + 1200)

    func makeKey(_ f: Fixture, _ name: String = "vault.key") throws -> VaultKey {
        try VaultKey.create(at: f.root.appending(name))
    }

    /// Every regular file under `dir`, with its bytes.
    func files(under dir: FilePath) -> [(String, Data)] {
        let walk = FileManager.default.enumerator(atPath: dir.string)
        var out: [(String, Data)] = []
        while let name = walk?.nextObject() as? String {
            let path = dir.appending(name).string
            var st = stat()
            if stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, let data = FileManager.default.contents(atPath: path) { out.append((name, data)) }
        }
        return out
    }

    @Test func anEncryptedVaultReadsLikeAPlainOneAndHoldsNoPlaintext() throws {
        let f = try Fixture(records: 1200, seed: 21)
        let key = try makeKey(f)
        let vault = try f.makeVault(key: key)
        #expect(vault.atRest.isEncrypted)
        // A third disk seeded with data (the initial replication's copy is sealed too).
        var seed = randomBytes(64 * 4096, seed: 22)
        seed.replaceSubrange((16 * 4096)..<(20 * 4096), with: [UInt8](repeating: 0, count: 4 * 4096))
        let seedPath = f.root.appending("seed.img")
        try Data(seed).write(to: URL(fileURLWithPath: seedPath.string))
        try vault.addDisk(group: Fixture.groupHex, id: DiskID(2), name: "d2", sizeBytes: 128 * 4096, initialContent: seedPath)
        // Streamed as runs of 20 records: many small layers, for compaction to merge.
        for seg in try f.sealedSegments() {
            let scan = try SegmentReader.scan(seg.bytes, path: FilePath(seg.name))
            for start in stride(from: 0, to: scan.records.count, by: 20) {
                let end = min(start + 20, scan.records.count)
                let to = end < scan.records.count ? scan.records[end].offset : scan.validEnd
                _ = try vault.ingest(records: Array(seg.bytes[scan.records[start].offset..<to]), firstLSN: scan.records[start].header.lsn, name: seg.name)
            }
        }

        func checkEveryPoint() throws {
            for p in try vault.points() {
                let reader = try PointReader(vault: vault, lsn: p.lsn)
                for d in 0..<2 { #expect(try f.read(reader, disk: d) == f.state(disk: d, at: p.lsn), "point \(p.label) disk \(d)") }
            }
            var d2 = [UInt8](repeating: 0, count: 128 * 4096)
            try d2.withUnsafeMutableBytes { try PointReader(vault: vault, lsn: try vault.lsnRange().last).read(disk: DiskID(2), at: 0, into: $0) }
            #expect(d2 == seed + [UInt8](repeating: 0, count: 64 * 4096), "the seeded disk reads back as it was copied")
        }
        try checkEveryPoint()
        // Retention merges old layers into the bases: sealed there, still the same reads.
        let report = try vault.prune(now: Self.now, policy: RetentionPolicy(window: 600, keepAll: 200, every: 100))
        #expect(report.mergedLayers > 0)
        try checkEveryPoint()
        // Compaction copies sealed frames into a new layer unchanged (the AAD names the record, not its place).
        #expect(try vault.compact() > 0)
        try checkEveryPoint()
        #expect(try VaultVerifier.verify(vault).problems.isEmpty)

        // No written block, nor the seeded data, is in any file of the vault in the clear (the
        // fixture's data is random: it does not compress, so a plain vault holds it verbatim).
        let stored = files(under: vault.root)
        #expect(stored.contains { $0.0.hasSuffix(".layer") } && stored.contains { $0.0.hasSuffix(".seal") })
        for w in f.writes.prefix(40) + [(LSN.zero, 2, 0, Array(seed[0..<4096]))] {
            let needle = Data(w.data[0..<48])
            #expect(!stored.contains { $0.1.range(of: needle) != nil }, "block \(w.block) of disk \(w.disk) (LSN \(w.lsn)) lies in the vault in the clear")
        }
    }

    @Test func withoutItsKeyOrWithAnotherTheVaultSaysSoAndReadsNothing() throws {
        let f = try Fixture(records: 200, seed: 23)
        let vault = try f.makeVault(key: try makeKey(f))
        for s in try f.sealedSegments() { _ = try vault.ingest(segment: s.bytes, name: s.name) }
        let last = try vault.lsnRange().last

        let locked = try Vault(root: vault.root)
        #expect(try locked.points().count == (try vault.points().count), "the catalog is listed without the key")
        let missing = #expect(throws: LifeboatError.self) { _ = try PointReader(vault: locked, lsn: last) }
        #expect(missing?.code == .permission && missing?.message.contains("encrypted (key id") == true, "\(String(describing: missing))")
        #expect(throws: LifeboatError.self) { _ = try VaultVerifier.verify(locked) }

        let other = try makeKey(f, "other.key")
        let wrong = #expect(throws: LifeboatError.self) { _ = try Vault(root: vault.root, key: other) }
        #expect(wrong?.code == .permission && wrong?.message.contains("is not this vault's") == true, "\(String(describing: wrong))")

        // Only the group's writer gives an empty group its key: a reader with a key leaves it plain.
        let empty = try temporaryDirectory()
        _ = try Vault(root: empty, create: true)
        #expect(!(try Vault(root: empty, key: other).atRest.isEncrypted))
        #expect(!(try Vault(root: empty).atRest.isEncrypted))
        #expect(try Vault(root: empty, create: true, key: other).atRest.isEncrypted)

        // A plain layer dropped into an encrypted vault is refused, not served.
        let plain = try Fixture(records: 200, seed: 23)
        let plainVault = try plain.makeVault()
        for s in try plain.sealedSegments() { _ = try plainVault.ingest(segment: s.bytes, name: s.name) }
        let row = try #require(try vault.layerRows(upTo: last).last)
        let plainRow = try #require(try plainVault.layerRows(upTo: last).last)
        #expect(row.file == plainRow.file)
        try FileManager.default.removeItem(atPath: vault.layerPath(row).string)
        try FileManager.default.copyItem(atPath: plainVault.layerPath(plainRow).string, toPath: vault.layerPath(row).string)
        let planted = #expect(throws: LifeboatError.self) { _ = try PointReader(vault: vault, lsn: last) }
        #expect(planted?.code == .corrupt && planted?.message.contains("not encrypted") == true, "\(String(describing: planted))")
    }

    @Test func aDamagedFrameOrBaseSealIsNamedNeverServed() throws {
        let f = try Fixture(records: 1200, seed: 24)
        let vault = try f.makeVault(key: try makeKey(f))
        for s in try f.sealedSegments() { _ = try vault.ingest(segment: s.bytes, name: s.name) }
        _ = try vault.prune(now: Self.now, policy: RetentionPolicy(window: 600, keepAll: 200, every: 100))
        let last = try vault.lsnRange().last

        // A flipped bit inside a sealed frame's ciphertext (zstd's own checksum is inside the seal).
        let row = try #require(try vault.layerRows(upTo: last).first)
        let layer = try #require(try vault.openLayers([row]).first)
        let entry = layer.entry(0)
        let path = vault.layerPath(row).string
        var bytes = try #require(FileManager.default.contents(atPath: path))
        bytes[entry.frameOffset + 20] ^= 0x01
        try bytes.write(to: URL(fileURLWithPath: path))
        let frame = #expect(throws: LifeboatError.self) {
            var out = [UInt8](repeating: 0, count: 4096)
            try out.withUnsafeMutableBytes { try PointReader(vault: vault, lsn: last).readBlock(disk: entry.disk, block: entry.block, into: $0) }
        }
        #expect(frame?.code == .corrupt && frame?.message.contains("fails authentication") == true && frame?.offset == Int64(entry.frameOffset),
                "\(String(describing: frame))")
        #expect(try VaultVerifier.verify(vault).problems.contains { $0.error.message.contains("fails authentication") })
        bytes[entry.frameOffset + 20] ^= 0x01
        try bytes.write(to: URL(fileURLWithPath: path))

        // A base block whose seal was altered (its data and CRC intact) fails to open.
        let disk = try vault.disk(named: "d0")
        let sealed = try #require((0..<disk.blockCount).first { b in
            let sealFile = FileManager.default.contents(atPath: vault.baseSealsPath(disk.id).string)!
            return sealFile[(b * 24)..<(b * 24 + 24)].contains { $0 != 0 }
        }, "the prune sealed blocks into the base")
        let sealPath = vault.baseSealsPath(disk.id).string
        var seals = try #require(FileManager.default.contents(atPath: sealPath))
        seals[sealed * 24 + 10] ^= 0x80
        try seals.write(to: URL(fileURLWithPath: sealPath))
        let base = #expect(throws: LifeboatError.self) {
            var out = [UInt8](repeating: 0, count: 4096)
            let reader = try PointReader(vault: vault, lsn: try vault.lsnRange().base)
            try out.withUnsafeMutableBytes { try reader.read(disk: disk.id, at: Int64(sealed) * 4096, into: $0) }
        }
        #expect(base?.code == .corrupt && base?.message.contains("block \(sealed) fails authentication") == true && base?.offset == Int64(sealed) * 4096,
                "\(String(describing: base))")
        #expect(try VaultVerifier.verify(vault).problems.contains { $0.error.message.contains("block \(sealed) fails authentication") })
    }

    static let oracle = LayerFixtureTests.here.appendingPathComponent("../../Harness/oracles/open-sealed.py").standardized.path
    static let hasOracle = (try? run(["python3", "-c", "import cryptography"]).status) == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/zstd")

    /// An independent reader written from the format doc (Python's `cryptography`, the zstd CLI)
    /// opens every sealed frame and every sealed base block to the data the journal wrote.
    @Test(.enabled(if: hasOracle, "needs python3-cryptography and zstd (Harness/setup.sh installs them)"))
    func anOutsideReaderOpensLayersAndBasesToWhatWasWritten() throws {
        let f = try Fixture(records: 600, seed: 25)
        let keyPath = f.root.appending("vault.key")
        let vault = try f.makeVault(key: try VaultKey.create(at: keyPath))
        for s in try f.sealedSegments() { _ = try vault.ingest(segment: s.bytes, name: s.name) }
        _ = try vault.prune(now: Date(timeIntervalSince1970: 1_700_000_000 + 600), policy: RetentionPolicy(window: 300, keepAll: 100, every: 100))
        let (base, last) = try vault.lsnRange()
        #expect(base > .zero, "the prune merged layers into the bases")
        func sha(_ bytes: [UInt8]) -> String { SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined() }
        var frames = 0
        for row in try vault.layerRows(upTo: last) {
            let out = try run(["python3", Self.oracle, "layer", vault.layerPath(row).string, keyPath.string])
            #expect(out.status == 0, "\(out.stderr)")
            for line in out.stdout.split(separator: "\n") {
                let p = line.split(separator: " ")
                let (disk, block, lsn) = (Int(p[0])!, Int(p[1])!, LSN(UInt64(p[2])!))
                let write = f.writes.first { $0.lsn == lsn && $0.disk == disk && $0.block == block }
                #expect(write.map { sha($0.data) } == String(p[3]), "disk \(disk) block \(block) LSN \(lsn)")
                frames += 1
            }
        }
        #expect(frames > 100)
        var blocks = 0
        for d in 0..<2 {
            let out = try run(["python3", Self.oracle, "base", vault.basePath(DiskID(UInt32(d))).string, vault.baseSealsPath(DiskID(UInt32(d))).string,
                               keyPath.string, Fixture.groupHex, String(d)])
            #expect(out.status == 0, "\(out.stderr)")
            let state = f.state(disk: d, at: base)
            for line in out.stdout.split(separator: "\n") {
                let p = line.split(separator: " ")
                let block = Int(p[0])!
                #expect(sha(Array(state[(block * 4096)..<((block + 1) * 4096)])) == String(p[2]), "base of disk \(d), block \(block)")
                blocks += 1
            }
        }
        #expect(blocks > 50)
    }

    @Test func aKeyFileThatIsMissingOpenOrMalformedIsRefusedByName() throws {
        let dir = try temporaryDirectory()
        let path = dir.appending("k")
        let missing = #expect(throws: LifeboatError.self) { _ = try VaultKey.load(path) }
        #expect(missing?.code == .notFound && missing?.path == path.string)
        let made = try VaultKey.create(at: path)
        #expect(try VaultKey.load(path).id == made.id)
        #expect(throws: LifeboatError.self) { _ = try VaultKey.create(at: path) }  // never overwritten
        chmod(path.string, 0o644)
        let open = #expect(throws: LifeboatError.self) { _ = try VaultKey.load(path) }
        #expect(open?.code == .permission && open?.message.contains("mode 644") == true)
        let bad = dir.appending("bad")
        _ = FileManager.default.createFile(atPath: bad.string, contents: Data("zz\(String(repeating: "0", count: 62))\n".utf8), attributes: [.posixPermissions: 0o600])
        let malformed = #expect(throws: LifeboatError.self) { _ = try VaultKey.load(bad) }
        #expect(malformed?.code == .invalidArgument && malformed?.message.contains("64 hex digits") == true)
    }
}
