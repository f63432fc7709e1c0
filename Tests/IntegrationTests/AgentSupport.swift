import Benchmarks
import Foundation
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `returnpath agent …` running in the background: its standard output and error collected as they come, stopped
/// with SIGTERM then SIGKILL whatever happens (`stop`, or deinit).
final class AgentProcess: @unchecked Sendable {
    let process = Process()
    private let out = Pipe(), err = Pipe()
    private let collected = Mutex<(output: String, errors: String)>(("", ""))
    private let readers = DispatchGroup()

    init(_ arguments: [String], environment: [String: String] = [:]) throws {
        process.executableURL = URL(fileURLWithPath: returnpathBinary)
        process.arguments = ["agent"] + arguments
        var env = ProcessInfo.processInfo.environment
        for (key, value) in environment { env[key] = value }
        process.environment = env
        process.standardOutput = out
        process.standardError = err
        try process.run()
        for (pipe, isError) in [(out, false), (err, true)] {
            readers.enter()
            Thread { [self] in
                let handle = pipe.fileHandleForReading
                while true {
                    let data = handle.availableData
                    if data.isEmpty { break }
                    let text = String(decoding: data, as: UTF8.self)
                    collected.withLock { if isError { $0.errors += text } else { $0.output += text } }
                }
                readers.leave()
            }.start()
        }
    }

    deinit { kill() }

    var pid: Int32 { process.processIdentifier }
    var output: String { collected.withLock { $0.output } }
    var errors: String { collected.withLock { $0.errors } }
    var isRunning: Bool { process.isRunning }

    /// Waits until the agent's log (standard error) contains `text` (counting from `after` characters).
    @discardableResult
    func waitForLog(_ text: String, after offset: Int = 0, timeout: Double = 10) -> Bool {
        _ = waitUntil(timeout: timeout) { [self] in
            if !process.isRunning { return true }   // it stopped: no use waiting
            let all = errors
            return all.count > offset && all.dropFirst(offset).contains(text)
        }
        let all = errors
        return all.count > offset && all.dropFirst(offset).contains(text)
    }

    /// The port of the metrics endpoint (the agent logs it; --metrics-address 127.0.0.1:0 picks a free one).
    func metricsPort(timeout: Double = 10) -> Int? {
        guard waitForLog("metrics on http://127.0.0.1:", timeout: timeout) else { return nil }
        guard let range = errors.range(of: "metrics on http://127.0.0.1:") else { return nil }
        return Int(errors[range.upperBound...].prefix(while: \.isNumber))
    }

    /// Sends `signal` and waits for the exit: the status and how long it took. SIGKILL after `timeout`.
    @discardableResult
    func stop(_ signal: Int32 = SIGTERM, timeout: Double = 5) -> (status: Int32, seconds: Double, reason: Process.TerminationReason) {
        let start = Date()
        if process.isRunning { Glibc.kill(process.processIdentifier, signal) }
        if !waitUntil(timeout: timeout, { [self] in !process.isRunning }) {
            Glibc.kill(process.processIdentifier, SIGKILL)
        }
        process.waitUntilExit()
        let seconds = Date().timeIntervalSince(start)
        readers.wait()
        return (process.terminationStatus, seconds, process.terminationReason)
    }

    /// SIGTERM, then SIGKILL: never leaves an agent behind.
    func kill() {
        guard process.isRunning else { return }
        stop(SIGTERM, timeout: 3)
    }
}

/// Polls `condition` every `interval` seconds (default 2 ms) until it holds or `timeout` passes.
@discardableResult
func waitUntil(timeout: Double, interval: Double = 0.002, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if try condition() { return true }
        usleep(UInt32(interval * 1e6))
    }
    return try condition()
}

/// The agent's endpoints, read as the benchmark reads them.
func httpGet(port: Int, _ path: String) throws -> (status: Int, body: String) { try localHTTPGet(port: port, path) }

/// Prometheus text → "name{labels}" → value.
func parseMetrics(_ text: String) -> [String: Double] {
    var samples: [String: Double] = [:]
    for line in text.split(separator: "\n") where !line.hasPrefix("#") {
        guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
        samples[String(line[..<space])] = value
    }
    return samples
}

/// A scratch directory, removed afterwards.
func withTemporaryDirectory<T>(_ body: (String) throws -> T) throws -> T {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("rp-agent-\(getpid())-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: path) }
    return try body(path)
}
