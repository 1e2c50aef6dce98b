import Foundation
import LifeboatCore
import LifeboatSite
import LifeboatTestSupport
import SystemPackage
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The site's failover files as Docs/formats/failover.md describes them, read from its fixtures.
struct FailoverFormatTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/failover").path

    /// A site whose state directory holds `fixture` as its generation.json.
    func site(with fixture: String) throws -> Site {
        let root = try makeTemporaryDirectory("gen")
        let site = try Site.initialize(at: FilePath(root + "/site"))
        try FileManager.default.copyItem(atPath: Self.fixtures + "/" + fixture, toPath: root + "/site/state/generation.json")
        return site
    }

    @Test func aFencedSitesGenerationReadsAsTheFormatSays() throws {
        let g = try SiteGeneration.load(try site(with: "fenced-generation.json"))
        #expect(g.generation == 1 && g.owner == "" && g.replicaLSN == nil && g.draining == nil)
        #expect(g.fenced?.why.hasPrefix("this writer serves generation 1; the group is in generation 2") == true)
        #expect(g.claim == .original)
    }

    @Test func aReplicasGenerationReadsAsTheFormatSays() throws {
        let g = try SiteGeneration.load(try site(with: "replica-generation.json"))
        #expect(g.generation == 2 && g.replicaLSN == 411 && g.forkLSN == 405 && g.fenced != nil)
    }

    @Test func aSiteWithoutTheFileIsGenerationOnesOwnerAndAMalformedOneIsDamage() throws {
        let root = try makeTemporaryDirectory("gen")
        let s = try Site.initialize(at: FilePath(root + "/site"))
        #expect(try SiteGeneration.load(s) == .original)
        try "{\"generation\": \"two\", \"owner\": \"\"}".write(toFile: root + "/site/state/generation.json", atomically: true, encoding: .utf8)
        let error = #expect(throws: LifeboatError.self) { _ = try SiteGeneration.load(s) }
        #expect(error?.code == .corrupt && error?.path?.hasSuffix("state/generation.json") == true)
    }

    /// The fill bitmap of the worked example on a failed-over 1 MiB disk: blocks 0–3 and 100
    /// read from the primary (bytes put there by hand), every other block from the point.
    @Test(.enabled(if: canMount, mountSkipReason), .timeLimit(.minutes(2)))
    func theFillBitmapOfTheWorkedExampleSaysWhichBlocksThePrimaryHolds() throws {
        let t = try TestSite(disks: [("d0", "1M")], withVault: true)
        defer { t.cleanup() }
        _ = try t.startProtect()
        let point = randomBytes(1 << 20, seed: 97)
        try writeBytes(t.image("d0"), at: 0, point)
        let id = try t.checkpointInVault()
        #expect(t.protect?.stop() == 0)
        let recovered = t.root + "/recovered"
        try check(lifeboat("failover", "--vault", t.vault, "--point", String(id), "--to", recovered, "--yes"))
        let mine = [UInt8](repeating: 0xAB, count: 4096)
        let primary = try FileDescriptor.open(recovered + "/disks/d0.img", .writeOnly)
        try primary.closeAfter { for b in [0, 1, 2, 3, 100] { _ = try primary.writeAll(toAbsoluteOffset: Int64(b) << 12, mine) } }
        unlink(recovered + "/disks/d0.fill")
        try FileManager.default.copyItem(atPath: Self.fixtures + "/d0.fill", toPath: recovered + "/disks/d0.fill")
        let b = ProtectedSiteOnTheVaultHost(site: recovered, mountpoint: t.root + "/mnt-b")
        defer { b.stop() }
        try b.start()
        let disk = try readBytes(b.image("d0"), at: 0, count: 1 << 20)
        for block in 0..<256 {
            let expected = [0, 1, 2, 3, 100].contains(block) ? mine : Array(point[(block << 12)..<((block + 1) << 12)])
            #expect(Array(disk[(block << 12)..<((block + 1) << 12)]) == expected, "block \(block)")
        }
    }
}
