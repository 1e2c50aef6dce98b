import Foundation
import GRDB
import LifeboatCore
import LifeboatJournal
import SystemPackage
import Testing

@testable import LifeboatVault

/// Damaged vault files are errors with their file and offset, never a trap and never a default.
@Suite struct DamageTests {
    private func vaultWithLayers() throws -> (Vault, FilePath) {
        let f = try Fixture(records: 300, seed: 11)
        let vault = try f.makeVault()
        for s in try f.sealedSegments() { _ = try vault.ingest(segment: s.bytes, name: s.name) }
        let first = try FileManager.default.contentsOfDirectory(atPath: vault.layersDirectory.string).sorted()[0]
        return (vault, vault.layersDirectory.appending(first))
    }

    @Test func everySingleBitFlipInALayersHeaderAndFooterIsAnErrorNotATrap() throws {
        let (_, path) = try vaultWithLayers()
        let good = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path.string)))
        let damaged = FilePath(path.string + ".damaged")
        let positions = Array(0..<LayerFormat.headerSize) + Array((good.count - LayerFormat.footerSize)..<good.count)
        var refused = 0
        for byte in positions {
            for bit in 0..<8 {
                var bytes = good
                bytes[byte] ^= UInt8(1 << bit)
                try Data(bytes).write(to: URL(fileURLWithPath: damaged.string))
                do { _ = try LayerReader(path: damaged, sealer: nil) } catch let e as LifeboatError {
                    #expect(e.code == .corrupt || e.code == .unsupported)
                    #expect(e.offset != nil, "\(e)")
                    refused += 1
                }
            }
        }
        // Every flip is caught: the magic, sizes and counts by their checks, the rest by the CRC
        // (bytes 12-15 of the footer are reserved and unchecked).
        #expect(refused == positions.count * 8 - 4 * 8)
    }

    @Test func theTopBitOfTheEntryCountIsNamedWithItsOffset() throws {
        let (_, path) = try vaultWithLayers()
        var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path.string)))
        bytes[48 + 7] ^= 0x80
        try Data(bytes).write(to: URL(fileURLWithPath: path.string))
        let error = #expect(throws: LifeboatError.self) { _ = try LayerReader(path: path, sealer: nil) }
        #expect(error?.code == .corrupt)
        #expect(error?.offset == 48)
        #expect(error?.path == path.string)
    }

    @Test func undecodableDigestsInTheCatalogAreDamageNotAnEmptyMap() throws {
        let (vault, _) = try vaultWithLayers()
        #expect(try !vault.points().isEmpty)
        try vault.catalog.db.write { db in try db.execute(sql: "UPDATE point SET digests = '{\"0\": 17}' WHERE id = 1") }
        let error = #expect(throws: LifeboatError.self) { _ = try vault.points() }
        #expect(error?.code == .corrupt)
        #expect(error?.message.contains("point 1") == true)
    }

    @Test func anUnknownPointKindInTheCatalogIsDamage() throws {
        let (vault, _) = try vaultWithLayers()
        try vault.catalog.db.write { db in try db.execute(sql: "UPDATE point SET kind = 'app-consisten' WHERE id = 1") }
        let error = #expect(throws: LifeboatError.self) { _ = try vault.points() }
        #expect(error?.code == .corrupt)
    }

    @Test func aMissingCatalogTableIsDamageWithTheCatalogNamed() throws {
        let (vault, _) = try vaultWithLayers()
        try vault.catalog.db.write { db in try db.execute(sql: "DROP TABLE point") }
        let error = #expect(throws: LifeboatError.self) { _ = try vault.points() }
        #expect(error?.code == .corrupt)
        #expect(error?.path == vault.root.appending("catalog.sqlite").string)
    }

    @Test func aVaultIsClaimedByOneGroupAndRefusesAnotherNamingBoth() throws {
        let root = try temporaryDirectory()
        let vault = try Vault(root: root, create: true)
        try vault.claim(group: "aa")
        try vault.claim(group: "aa")
        let error = #expect(throws: LifeboatError.self) { try vault.claim(group: "bb") }
        #expect(error?.code == .alreadyExists)
        #expect(error?.message.contains("protection group aa; this site is group bb") == true)
        #expect(try vault.groupID() == "aa")
    }

    @Test func aNewVaultIsPrivateWhateverTheUmask() throws {
        let old = umask(0)
        defer { umask(old) }
        let root = try temporaryDirectory().appending("v")
        _ = try Vault(root: root, create: true)
        var st = stat()
        for (path, mode) in [(root.string, 0o700), (root.appending("layers").string, 0o700), (root.appending("catalog.sqlite").string, 0o600)] {
            #expect(stat(path, &st) == 0)
            #expect(Int(st.st_mode & 0o777) == mode, "\(path)")
        }
    }

    @Test func anOpenVaultMadeReadableByAnOlderVersionIsTightened() throws {
        let root = try temporaryDirectory().appending("v")
        _ = try Vault(root: root, create: true)
        chmod(root.string, 0o755)
        chmod(root.appending("catalog.sqlite").string, 0o644)
        _ = try Vault(root: root)
        var st = stat()
        stat(root.string, &st)
        #expect(st.st_mode & 0o777 == 0o700)
        stat(root.appending("catalog.sqlite").string, &st)
        #expect(st.st_mode & 0o777 == 0o600)
    }
}
