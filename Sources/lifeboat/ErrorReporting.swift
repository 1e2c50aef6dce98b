import ArgumentParser
import Foundation
import LifeboatCore

#if canImport(Glibc)
import Glibc
#endif

/// The CLI's exit codes (Docs/operations.md): sysexits-style, one per error code.
enum ExitStatus {
    static func code(for code: LifeboatError.Code) -> Int32 {
        switch code {
        case .mismatch: 1
        case .degraded: 3
        case .inconclusive: 4
        case .invalidArgument: 64
        case .corrupt: 65
        case .notFound: 66
        case .unsupported: 69
        case .internalError: 70
        case .alreadyExists: 73
        case .io: 74
        case .busy: 75
        case .fenced: 76
        case .permission: 77
        }
    }
}

/// The one place the CLI prints an error: `lifeboat: error: …` on stderr.
func printError(_ text: String) {
    fflush(nil)  // what the command printed comes first, also when stdout is a pipe (nil: every output stream)
    FileHandle.standardError.write(Data("lifeboat: error: \(text)\n".utf8))
}

func printWarning(_ text: String) {
    FileHandle.standardError.write(Data("lifeboat: warning: \(text)\n".utf8))
}

/// Parses, runs, and turns every error — ours, the argument parser's, or any other — into one
/// line through `printError` and its documented exit code. SIGPIPE is ignored in every command:
/// a closed log or output pipe must never kill `protect` (or leave a dead FUSE mount); writes
/// to it fail with EPIPE instead, which logging ignores.
func runLifeboat() -> Never {
    signal(SIGPIPE, SIG_IGN)
    var command: any ParsableCommand
    do { command = try Lifeboat.parseAsRoot() } catch {
        exit(reportParseError(error))
    }
    do {
        try command.run()
        exit(0)
    } catch {
        exit(report(error))
    }
}

/// An error from `run()`: its line and exit code.
func report(_ error: any Error) -> Int32 {
    switch error {
    case let e as LifeboatError:
        printError(e.description)
        return ExitStatus.code(for: e.code)
    case let e as ExitCode:
        return e.rawValue
    case is CleanExit:
        return 0
    case let e as ValidationError:
        printError(e.message)
        return ExitStatus.code(for: .invalidArgument)
    default:
        // The parser's own errors can also surface from run() (`lifeboat help NAME`).
        if String(reflecting: type(of: error)).hasPrefix("ArgumentParser.") { return reportParseError(error) }
        printError("internal error: \(error)")
        return ExitStatus.code(for: .internalError)
    }
}

/// A parse or validation error: the parser's message with the usage of the subcommand it
/// belongs to (help and --version print to stdout and exit 0).
func reportParseError(_ error: any Error) -> Int32 {
    let code = Lifeboat.exitCode(for: error).rawValue
    var text = Lifeboat.fullMessage(for: error)
    if code == 0 {
        print(text)
        return 0
    }
    if text.hasPrefix("Error: ") { text.removeFirst("Error: ".count) }
    if let hint = subcommandSuggestion() {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        lines.insert(hint, at: 1)
        text = lines.joined(separator: "\n")
    }
    printError(text)
    return ExitStatus.code(for: .invalidArgument)
}

/// "did you mean 'status'?" for a mistyped first word (the parser suggests options only).
private func subcommandSuggestion() -> String? {
    guard let word = CommandLine.arguments.dropFirst().first, !word.hasPrefix("-") else { return nil }
    let names = Lifeboat.configuration.subcommands.compactMap { $0.configuration.commandName }
    guard !names.contains(word) else { return nil }
    let best = names.map { ($0, editDistance($0, word)) }.min { $0.1 < $1.1 }
    guard let best, best.1 <= 2 else { return nil }
    return "did you mean '\(best.0)'?"
}

private func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a), b = Array(b)
    var row = Array(0...b.count)
    for i in 1...max(a.count, 1) where !a.isEmpty {
        var previous = row[0]
        row[0] = i
        for j in 1...max(b.count, 1) where !b.isEmpty {
            let current = row[j]
            row[j] = min(row[j] + 1, row[j - 1] + 1, previous + (a[i - 1] == b[j - 1] ? 0 : 1))
            previous = current
        }
    }
    return row[b.count]
}
