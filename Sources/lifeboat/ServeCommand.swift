import ArgumentParser
import Foundation
import LifeboatCore
import LifeboatFUSE
import LifeboatIdentity
import LifeboatVault
import LifeboatWire
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// `lifeboat vault serve --vault DIR --listen ADDR:PORT`: the vault on the network, in the
/// foreground, until SIGINT/SIGTERM/SIGHUP (requests in flight finish first).
struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve the vault to enrolled sites over mutual TLS (foreground; SIGTERM stops it).",
        discussion: """
            Sites reach it with the bundle `vault enroll` gave them. TLS 1.3 only; a client without a \
            certificate of this vault's CA, or whose site is not enrolled, is refused and logged. The \
            vault's upkeep (compaction, retention) runs inside the service.
            """)

    @OptionGroup var vault: VaultDirectoryOption
    @Option(help: ArgumentHelp("Where to listen: ADDRESS:PORT (e.g. 0.0.0.0:9443, [::]:9443).", valueName: "address")) var listen: String
    @Option(help: ArgumentHelp("The key file the sites' data is encrypted with at rest (vault keygen; default: $LIFEBOAT_VAULT_KEY).",
                               valueName: "file")) var key: String?
    @Flag(help: "Keep the sites' data unencrypted at rest (no key).") var unencrypted = false

    func validate() throws { _ = try Self.hostAndPort(listen) }

    /// The key, or none when --unencrypted says so; a key file inside the vault directory is
    /// refused (whoever copies the vault would have it).
    private func atRestKey(vault root: String) throws -> VaultKey? {
        let key = try vaultKey(self.key)
        switch (key, unencrypted) {
        case (nil, false):
            throw ValidationError("the vault's data is encrypted at rest with a key: give --key FILE (make one with `lifeboat vault keygen FILE`), or say --unencrypted")
        case (.some, true):
            throw ValidationError("--key and --unencrypted contradict each other")
        case (nil, true):
            return nil
        case (let key?, false):
            let file = vaultKeyFile(self.key) ?? ""
            if let keyDir = realpath(file, nil).map({ p in defer { free(p) }; return String(cString: p) }),
               let vaultDir = realpath(root, nil).map({ p in defer { free(p) }; return String(cString: p) }), keyDir.hasPrefix(vaultDir + "/") {
                throw LifeboatError(.invalidArgument, "the vault key is inside the vault directory \(root): keep it elsewhere (a copy of the vault must not carry its key)",
                                    path: file)
            }
            return key
        }
    }

    static func hostAndPort(_ text: String) throws -> (String, Int) {
        guard let (host, port) = SiteBundle.splitHostPort(Substring(text)) else {
            throw ValidationError("--listen '\(text)': use ADDRESS:PORT with a port from 0 to 65535 (0.0.0.0 listens everywhere)")
        }
        return (host, port)
    }

    func run() throws {
        let (host, port) = try Self.hostAndPort(listen)
        let logger = makeLogger()
        // The key is settled before the directory is made: a refusal leaves nothing behind.
        let server = try VaultServer(home: try vault.openOrCreate(key: try atRestKey(vault: absolutePath(vault.path ?? ""))), logger: logger)
        try server.start(host: host, port: port)
        // A test or a supervisor learns the port chosen for :0 from this line.
        FileHandle.standardOutput.write(Data("listening on \(host):\(server.boundPort ?? port)\n".utf8))
        var set = sigset_t()
        sigemptyset(&set)
        for s in StopSignals.all { sigaddset(&set, s) }
        var signal: Int32 = 0
        while sigwait(&set, &signal) != 0 {}
        logger.notice("signal \(signal): stopping the vault service")
        server.stop()
    }
}
