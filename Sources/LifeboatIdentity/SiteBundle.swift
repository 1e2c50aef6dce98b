import Crypto
import Foundation
import LifeboatCore
import SwiftASN1
import SystemPackage
import X509

/// What `lifeboat vault enroll` gives a site: everything it needs to reach the vault over mutual
/// TLS — the vault's CA (the only issuer it trusts), its own certificate and key, the vault's
/// address. JSON, file mode 0600 (it holds a private key). Format: Docs/formats/bundle.md.
public struct SiteBundle: Codable, Sendable, Equatable {
    public static let currentVersion = 1

    public var version = SiteBundle.currentVersion
    public var site: String
    /// `lifeboat://HOST:PORT`, when the enroller gave it.
    public var vault: String?
    public var ca: String
    public var certificate: String
    public var key: String

    public init(site: String, vault: String?, ca: String, certificate: String, key: String) {
        self.site = site
        self.vault = vault
        self.ca = ca
        self.certificate = certificate
        self.key = key
    }

    public static func siteURI(_ site: String) -> String { "lifeboat:site:" + site }
    public static let vaultURI = "lifeboat:vault"

    /// The site a certificate names (its `lifeboat:site:NAME` URI), if it names one.
    public static func siteNamed(by certificate: Certificate) -> String? {
        guard let names = (try? certificate.extensions.subjectAlternativeNames) ?? nil else { return nil }
        for case .uniformResourceIdentifier(let uri) in names where uri.hasPrefix("lifeboat:site:") {
            return String(uri.dropFirst("lifeboat:site:".count))
        }
        return nil
    }

    /// Whether the certificate is a vault service's (URI `lifeboat:vault`), not a site's: every
    /// certificate the vault's CA issues chains to it, so the chain alone cannot tell a site
    /// posing as the vault from the vault.
    public static func namesTheVault(_ certificate: Certificate) -> Bool {
        guard let names = (try? certificate.extensions.subjectAlternativeNames) ?? nil else { return false }
        return names.contains { if case .uniformResourceIdentifier(vaultURI) = $0 { true } else { false } }
    }

    /// Host and port of `vault` (`lifeboat://HOST:PORT`).
    public var hostAndPort: (host: String, port: Int)? {
        guard let vault, vault.hasPrefix("lifeboat://") else { return nil }
        return Self.splitHostPort(vault.dropFirst("lifeboat://".count))
    }

    /// Site names: 1 to 64 of letters, digits, `.`, `_`, `-`, not starting with `.` or `-`
    /// (they name files in the vault and appear in certificates).
    public static func validateSiteName(_ name: String) throws { try SiteName.validate(name) }

    /// `HOST:PORT` split: HOST a name, an IPv4 address or a bracketed IPv6 address (returned
    /// without its brackets), PORT a number from 0 to 65535; nil for anything else. One parser
    /// for vault addresses and `vault serve --listen`.
    public static func splitHostPort(_ text: Substring) -> (host: String, port: Int)? {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else { return nil }
        var host = text[..<colon]
        if host.hasPrefix("["), host.hasSuffix("]") { host = host.dropFirst().dropLast() }
        guard !host.isEmpty, !host.contains("/"), !host.contains("@") else { return nil }
        return (String(host), port)
    }

    /// `lifeboat://HOST:PORT` with a port from 1 to 65535 (HOST a name, an IPv4 address or a
    /// bracketed IPv6 address); anything else is refused with the reason.
    public static func validateVaultAddress(_ address: String) throws {
        let prefix = "lifeboat://"
        guard address.hasPrefix(prefix) else { throw LifeboatError(.invalidArgument, "'\(address)' is not a vault address: use lifeboat://HOST:PORT") }
        guard let (_, port) = splitHostPort(address.dropFirst(prefix.count)), port > 0 else {
            throw LifeboatError(.invalidArgument, "'\(address)': the vault address needs a port from 1 to 65535 and a host (lifeboat://HOST:PORT)")
        }
    }

    public func json() throws -> Data { try LifeboatJSON.encoder().encode(self) }

    /// Reads and checks a bundle: its version and fields, the three PEM documents, that the
    /// certificate was issued by the bundle's CA and names the bundle's site, and that the key
    /// is the certificate's. Every refusal names the file and the field.
    public static func load(_ path: FilePath) throws -> SiteBundle {
        let data: [UInt8]
        do { data = try readWholeFile(path) } catch { throw LifeboatError.system(error, "cannot read the bundle", path: path.string) }
        return try parse(data, path: path.string)
    }

    public static func parse(_ data: [UInt8], path: String) throws -> SiteBundle {
        guard data.count <= 1 << 20 else { throw LifeboatError(.invalidArgument, "the bundle is over 1 MiB: not a bundle", path: path) }
        let bundle: SiteBundle
        do { bundle = try LifeboatJSON.decoder().decode(SiteBundle.self, from: Data(data)) } catch let DecodingError.keyNotFound(key, _) {
            throw LifeboatError(.invalidArgument, "field '\(key.stringValue)' is missing: not a site bundle", path: path)
        } catch {
            throw LifeboatError(.invalidArgument, "not a site bundle (JSON with version, site, ca, certificate, key)", path: path)
        }
        guard bundle.version == currentVersion else {
            throw LifeboatError(.unsupported, "field 'version': bundle version \(bundle.version); this lifeboat reads version \(currentVersion)", path: path)
        }
        do { try validateSiteName(bundle.site) } catch let e as LifeboatError { throw LifeboatError(.invalidArgument, "field 'site': \(e.message)", path: path) }
        if let vault = bundle.vault {
            do { try validateVaultAddress(vault) } catch let e as LifeboatError { throw LifeboatError(.invalidArgument, "field 'vault': \(e.message)", path: path) }
        }
        let ca: Certificate, certificate: Certificate
        let key: P256.Signing.PrivateKey
        do { ca = try Certificate(pemEncoded: bundle.ca) } catch { throw LifeboatError(.invalidArgument, "field 'ca': not a PEM certificate", path: path) }
        do { certificate = try Certificate(pemEncoded: bundle.certificate) } catch {
            throw LifeboatError(.invalidArgument, "field 'certificate': not a PEM certificate", path: path)
        }
        do { key = try P256.Signing.PrivateKey(pemRepresentation: bundle.key) } catch {
            throw LifeboatError(.invalidArgument, "field 'key': not a PEM P-256 private key", path: path)
        }
        guard certificate.issuer == ca.subject, ca.publicKey.isValidSignature(certificate.signature, for: certificate) else {
            throw LifeboatError(.invalidArgument, "field 'certificate': not issued by the bundle's CA", path: path)
        }
        let names = (try? certificate.extensions.subjectAlternativeNames) ?? nil
        guard names?.contains(.uniformResourceIdentifier(siteURI(bundle.site))) == true else {
            throw LifeboatError(.invalidArgument, "field 'certificate': issued to another site, not '\(bundle.site)'", path: path)
        }
        guard certificate.publicKey == Certificate.PublicKey(key.publicKey) else {
            throw LifeboatError(.invalidArgument, "field 'key': not the key of the bundle's certificate", path: path)
        }
        return bundle
    }
}
