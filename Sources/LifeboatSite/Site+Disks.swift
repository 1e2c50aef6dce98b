import Foundation
import LifeboatCore
import SystemPackage
import LifeboatJournal
import LifeboatVault
import LifeboatVHD

#if canImport(Glibc)
import Glibc
#endif

extension Site {
    /// Names become file names (`NAME.img`): letters, digits, `.`, `_`, `-`; 1–64 characters,
    /// not starting with a dot (hidden) or a dash (every later command would take it for an option).
    public static func validateDiskName(_ name: String) throws {
        let allowed = name.unicodeScalars.allSatisfy { $0.isASCII && (CharacterSet.alphanumerics.contains($0) || "._-".unicodeScalars.contains($0)) }
        guard !name.isEmpty, name.count <= 64, allowed, !name.hasPrefix("."), !name.hasPrefix("-") else {
            throw LifeboatError(.invalidArgument, "disk name '\(name)' is not valid: use 1–64 letters, digits, '.', '_' or '-', not starting with '.' or '-'")
        }
    }

    /// Adds a disk: an empty (sparse) one of `sizeBytes`, or one whose initial content is the
    /// image `from`, raw or VHD (fixed or dynamic; size defaults to the image's). Fails while
    /// `protect` runs.
    /// `progress` gets the bytes copied so far of the `2 × size` a disk from an image copies
    /// (its primary and its base).
    public mutating func createDisk(name: String, sizeBytes: Int64?, from image: FilePath?, importedFrom: FilePath? = nil,
                                    progress: (Int64, Int64) -> Void = { _, _ in }) throws -> SiteConfig.Disk {
        try Site.validateDiskName(name)
        if let image, VHDReader.startsLikeADynamicVHD(image.string), !VHDReader.looksLikeVHD(image.string) {
            throw LifeboatError(.corrupt, "truncated dynamic VHD: it starts with a VHD footer copy but has no footer at its end", path: image.string)
        }
        if let image, VHDReader.looksLikeVHD(image.string) {
            // Import: the VHD's disk, converted to a sparse raw file, becomes the source.
            let vhd = try VHDReader(path: image.string)
            let raw = disksDirectory.appending(".\(name).import")
            defer { unlink(raw.string) }
            try SparseCopy.convert(vhd, to: raw)
            var disk = try createDisk(name: name, sizeBytes: sizeBytes ?? vhd.sizeBytes, from: raw, importedFrom: image, progress: progress)
            disk.source = image.string
            if let i = config.disks.firstIndex(where: { $0.id == disk.id }) {
                config.disks[i].source = image.string
                try save()
            }
            return disk
        }
        let lockFD = try lock(for: "adding a disk")
        defer { try? lockFD.close() }
        if config.disk(named: name) != nil {
            throw LifeboatError(.alreadyExists, "disk '\(name)' already exists in this site", path: root.string)
        }
        if let other = config.disks.first(where: { $0.name.lowercased() == name.lowercased() }) {
            throw LifeboatError(.alreadyExists, "disk '\(other.name)' exists: names that differ only in case are refused", path: root.string)
        }
        var imageSize: Int64 = 0
        if let image {
            do {
                let source = try FileDescriptor.open(image, .readOnly)
                defer { try? source.close() }
                imageSize = try source.fileSize()
            } catch {
                throw LifeboatError.wrapping(error, "cannot open the source image", path: image.string)
            }
        }
        let size = sizeBytes ?? imageSize
        guard size > 0 else { throw LifeboatError(.invalidArgument, "disk size must be given (--size) and greater than zero") }
        guard size % Int64(BlockSize.bytes) == 0 else {
            throw LifeboatError(.invalidArgument, "disk size \(size) is not a multiple of 4 KiB" + (image != nil && sizeBytes == nil ? " (the image's size; give --size to round it up)" : ""))
        }
        guard imageSize <= size else {
            // An imported VHD arrives here as its raw temporary copy: name what the user gave.
            throw LifeboatError(.invalidArgument, "the image's disk is \(imageSize) bytes, larger than the disk size \(size)", path: importedFrom?.string ?? image?.string)
        }
        let disk = SiteConfig.Disk(id: config.nextDiskID, name: name, sizeBytes: size, createdAt: Date(), source: image?.string)
        let paths = [primaryPath(disk), basePath(disk), digestPath(disk)]
        do {
            for (i, path) in paths[0...1].enumerated() {
                if let image {
                    try SparseImage.copy(from: image, to: path, sizeBytes: size) { progress(Int64(i) * size + $0, 2 * size) }
                } else {
                    try SparseImage.create(path, sizeBytes: size)
                }
            }
            let primary = try FileDescriptor.open(primaryPath(disk), .readOnly)
            defer { try? primary.close() }
            _ = try DigestMap(path: digestPath(disk), sizeBytes: size, rebuildFrom: primary)
            try syncDirectory(primaryPath(disk).removingLastComponent())
        } catch {
            for path in paths { try? FileManager.default.removeItem(atPath: path.string) }
            if let e = error as? LifeboatError { throw e }
            throw LifeboatError.wrapping(error, "cannot create the disk files", path: primaryPath(disk).string)
        }
        config.disks.append(disk)
        config.nextDiskID += 1
        try save()
        return disk
    }
}

extension Site {
    /// The files a disk has in the site, removed by `disk remove` or an interrupted create.
    public func files(ofDiskNamed name: String) -> [FilePath] {
        ["\(name).img", "\(name).base", "\(name).digest", ".\(name).import"].map { disksDirectory.appending($0) }
    }

    /// Removes a disk that nothing needs any more. Refused while protect runs, while the local
    /// journal still holds writes to it (recovery replays them), and while the vault holds it
    /// (its points include the disk): each refusal says which.
    /// `remoteVaultDisks` asks a vault on another machine which disks it holds (the caller
    /// links the wire); without it, such a site's disks are not removed.
    public mutating func removeDisk(name: String, remoteVaultDisks: (() throws -> Set<DiskID>)? = nil) throws {
        let lockFD = try lock(for: "removing a disk")
        defer { try? lockFD.close() }
        guard let disk = config.disk(named: name) else {
            let known = config.disks.map(\.name).joined(separator: ", ")
            throw LifeboatError(.notFound, "the site has no disk '\(name)' (it has: \(known.isEmpty ? "none" : known))", path: root.string)
        }
        var writes = 0
        _ = try JournalDirectory.scanAll(journalDirectory, groupID: config.groupIDBytes, repairTornTail: false) { scan, raw in
            for record in scan.records where record.header.type == .write {
                let payload = record.payload(in: raw)
                if WritePayloadHeader.decode(payload)?.disk == disk.diskID { writes += 1 }
            }
        }
        if writes > 0 {
            throw LifeboatError(.busy, "the local journal holds \(writes) write(s) to disk '\(name)' that recovery replays; "
                                + (config.vault == nil ? "a site without a vault keeps its whole journal" : "they go once shipped and checkpointed"),
                                path: journalDirectory.string)
        }
        if hasRemoteVault {
            guard let remoteVaultDisks else {
                throw LifeboatError(.busy, "the vault is on another machine (\(config.vault!)) and was not asked which disks it holds", path: root.string)
            }
            if try remoteVaultDisks().contains(disk.diskID) {
                throw LifeboatError(.busy, "the vault at \(config.vault!) holds disk '\(name)' (`lifeboat points --site` lists the points): "
                                    + "a disk the vault has replicated cannot be removed", path: root.string)
            }
        }
        if let vaultPath = config.vault, let vault = try? Vault(root: FilePath(vaultPath)), try vault.disks().contains(where: { $0.id == disk.diskID }) {
            let holders = try vault.points().filter { try $0.digestMap()[disk.diskID] != nil }.compactMap(\.id)
            throw LifeboatError(.busy, "the vault holds disk '\(name)'" + (holders.isEmpty ? "" : " in point(s) \(holders.map(String.init).joined(separator: ", "))")
                                + ": a disk the vault has replicated cannot be removed", path: vaultPath)
        }
        config.disks.removeAll { $0.name == name }
        try save()
        for path in files(ofDiskNamed: name) { unlink(path.string) }
        try syncDirectory(disksDirectory)
    }
}

/// VHD import: the VHD's disk as a sparse raw file.
enum SparseCopy {
    /// Writes a VHD's disk as a sparse raw file.
    static func convert(_ vhd: VHDReader, to path: FilePath) throws {
        let out = try FileDescriptor.open(path, .writeOnly, options: [.create, .truncate, .closeOnExec], permissions: PrivateFiles.fileMode)
        defer { try? out.close() }
        let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 4096)
        defer { chunk.deallocate() }
        var at: Int64 = 0
        while at < vhd.sizeBytes {
            let n = Int(min(Int64(chunk.count), vhd.sizeBytes - at))
            let piece = UnsafeMutableRawBufferPointer(rebasing: chunk[0..<n])
            try vhd.read(at: at, into: piece)
            if !SparseImage.isZero(UnsafeRawBufferPointer(piece)) { _ = try out.writeAll(toAbsoluteOffset: at, UnsafeRawBufferPointer(piece)) }
            at += Int64(n)
        }
        try out.resize(to: vhd.sizeBytes)
    }

}
