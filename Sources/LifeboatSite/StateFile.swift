import Foundation
import LifeboatCore
import SystemPackage

/// The site's small JSON records of the failover transitions (`generation.json`, the
/// re-protect plan, the failback's token, a change of point's intent; Docs/formats/failover.md):
/// written atomically and durably, read back as absent, a value, or damage naming the file.
public enum StateFile {
    public static func read<T: Decodable>(_ type: T.Type, at path: FilePath, what: String) throws -> T? {
        let bytes: [UInt8]
        do { bytes = try readWholeFile(path) } catch {
            if error == .noSuchFileOrDirectory { return nil }
            throw LifeboatError.system(error, "cannot read \(what)", path: path.string)
        }
        do { return try SiteConfig.decoder.decode(T.self, from: Data(bytes)) } catch {
            throw LifeboatError(.corrupt, "\(what) is not valid", path: path.string, cause: error)
        }
    }

    public static func write<T: Encodable>(_ value: T, to path: FilePath) throws {
        let data: Data
        do { data = try SiteConfig.encoder.encode(value) } catch { throw LifeboatError(.internalError, "cannot encode \(path.lastComponent?.string ?? path.string)", cause: error) }
        try writeFileAtomically(path, Array(data))
    }
}
