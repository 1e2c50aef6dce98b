import ArgumentParser
import Foundation
import LifeboatCore
import LifeboatIdentity
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// `lifeboat vault enroll --site-name NAME > NAME.bundle`: a site's registration bundle.
struct EnrollCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "enroll",
        abstract: "Issue a site's certificate and print its registration bundle (JSON with a private key).",
        discussion: """
            The vault's certificate authority (VAULT/tls, made at the first enroll) signs a client \
            certificate for the site; the bundle holds it, its key, the CA and the vault's address. \
            Redirect it to a file: it is made readable by its owner only (mode 0600), and it is \
            never written to a terminal. A name enrolled before is refused. Format: Docs/formats/bundle.md.
            """)

    @OptionGroup var vault: VaultDirectoryOption
    @Option(help: "The site's name: 1 to 64 letters, digits, '.', '_' or '-'.") var siteName: String
    @Option(help: ArgumentHelp("Where sites reach the vault: lifeboat://HOST:PORT.", valueName: "address")) var address: String?
    @Option(help: "How long the certificate is valid, in days.") var days = 365

    func validate() throws {
        try SiteBundle.validateSiteName(siteName)
        if let address { try SiteBundle.validateVaultAddress(address) }
        guard (1...3650).contains(days) else { throw ValidationError("--days \(days): a certificate is valid 1 to 3650 days") }
    }

    func run() throws {
        // The bundle holds a private key: never on a terminal; a file it goes to is made 0600
        // before a byte is written.
        guard isatty(STDOUT_FILENO) == 0 else {
            throw LifeboatError(.invalidArgument, "the bundle holds a private key: redirect it to a file (lifeboat vault enroll … > \(siteName).bundle)")
        }
        var st = stat()
        if fstat(STDOUT_FILENO, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, fchmod(STDOUT_FILENO, 0o600) != 0 {
            throw LifeboatError.system(Errno(rawValue: errno), "cannot make the bundle file private (mode 0600)")
        }
        let home = try vault.openOrCreate()
        try home.checkServable()
        let authority = try VaultAuthority.open(vault: home.root, create: true)
        let bundle = try authority.enroll(site: siteName, vaultAddress: address, days: days)
        FileHandle.standardOutput.write(try bundle.json())
        FileHandle.standardOutput.write(Data("\n".utf8))
    }
}
