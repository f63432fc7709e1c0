import CLinux
import Namespace
import TextFormat
#if canImport(Glibc)
import Glibc
#endif

/// What the binary costs before it does any work, as `bench apply` reports it: its size (on disk, and the part
/// that is loaded: the allocated sections, which is what `strip` keeps), the shared libraries this process has
/// loaded (the same binary: `bench` runs the executable it times), and its start as a process (`--version`, the
/// median of `runs`) next to `true`'s, the floor of starting any process here.
public struct StartCost: Sendable {
    public var binaryBytes: Int
    public var allocatedBytes: Int
    public var libraries: [String]
    public var versionSeconds: Double
    public var trueSeconds: Double
    public var runs: Int

    public static func measure(_ executable: String, runs: Int) throws(BenchmarkError) -> StartCost {
        let (size, allocated) = try elfSizes(executable)
        let version = try median(runs) { () throws(BenchmarkError) in try run([executable, "--version"]) }
        let floor = try median(runs) { () throws(BenchmarkError) in try run([try locate("true")]) }
        return StartCost(binaryBytes: size, allocatedBytes: allocated, libraries: loadedLibraries(),
                         versionSeconds: version, trueSeconds: floor, runs: runs)
    }

    static func locate(_ program: String) throws(BenchmarkError) -> String {
        do { return try ProgramRun.locate(program) } catch { throw .program(error) }
    }

    static func run(_ arguments: [String]) throws(BenchmarkError) {
        let result: ProgramRun
        do { result = try ProgramRun.run(arguments) } catch { throw .program(error) }
        guard result.status == 0 else { throw .failed("\(arguments.joined(separator: " ")): exit \(result.status): \(result.errors)") }
    }

    /// The median of `runs` timings of `body`, after one run that warms the page cache.
    static func median(_ runs: Int, _ body: () throws(BenchmarkError) -> Void) throws(BenchmarkError) -> Double {
        try body()
        var times: [Double] = []
        for _ in 0..<max(1, runs) { times.append(try time(body)) }
        return times.sorted()[times.count / 2]
    }

    /// The shared objects the dynamic loader has loaded into this process, by the names it found them under (as
    /// `ldd` prints them: sonames), sorted: dl_iterate_phdr, less the executable and the kernel's vDSO.
    public static func loadedLibraries() -> [String] {
        var names: [String] = []
        withUnsafeMutablePointer(to: &names) { list in
            clinux_loaded_objects({ raw, context in
                guard let raw, let context else { return }
                let name = String(cString: raw).split(separator: "/").last.map(String.init) ?? ""
                if !name.isEmpty, !name.hasPrefix("linux-vdso") {
                    context.assumingMemoryBound(to: [String].self).pointee.append(name)
                }
            }, list)
        }
        return Array(Set(names)).sorted()
    }

    /// The file's size and the sum of its allocated sections that take room in the file (SHF_ALLOC, not NOBITS),
    /// from the ELF64 section headers.
    public static func elfSizes(_ path: String) throws(BenchmarkError) -> (file: Int, allocated: Int) {
        let fd = try syscall { open(path, O_RDONLY | O_CLOEXEC) }.get { BenchmarkError.failed("open \(path): \($0)") }
        defer { close(fd) }
        var status = stat()
        _ = try syscall { fstat(fd, &status) }.get { BenchmarkError.failed("stat \(path): \($0)") }
        func read(_ count: Int, at offset: Int) throws(BenchmarkError) -> [UInt8] {
            var bytes = [UInt8](repeating: 0, count: count)
            let n = try syscall { bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, off_t(offset)) } }
                .get { BenchmarkError.failed("read \(path): \($0)") }
            guard n == count else { throw .failed("\(path): not an ELF64 file (short read at \(offset))") }
            return bytes
        }
        func integer(_ bytes: [UInt8], _ at: Int, _ width: Int) -> Int {
            (0..<width).reversed().reduce(0) { $0 << 8 | Int(bytes[at + $1]) }   // little-endian
        }
        let header = try read(64, at: 0)
        guard header.starts(with: [0x7f, 0x45, 0x4c, 0x46, 2, 1]) else { throw .failed("\(path): not a little-endian ELF64 file") }
        let (offset, entrySize, count) = (integer(header, 0x28, 8), integer(header, 0x3a, 2), integer(header, 0x3c, 2))
        guard entrySize >= 64, count > 0, offset > 0, offset + entrySize * count <= Int(status.st_size) else {
            throw .failed("\(path): no section headers")
        }
        let table = try read(entrySize * count, at: offset)
        var allocated = 0
        for i in 0..<count {
            let base = i * entrySize
            let type = integer(table, base + 4, 4), flags = integer(table, base + 8, 8)
            if flags & 0x2 != 0 && type != 8 { allocated += integer(table, base + 32, 8) }   // SHF_ALLOC, not SHT_NOBITS
        }
        return (Int(status.st_size), allocated)
    }

    public var lines: [String] {
        func mb(_ bytes: Int) -> String { format("%.1f MB (%.1f MiB)", Double(bytes) / 1e6, Double(bytes) / 1_048_576) }
        return [
            "binary: \(mb(binaryBytes)) on disk, \(mb(allocatedBytes)) loaded (allocated sections: what strip keeps)",
            "shared libraries loaded (\(libraries.count)): \(libraries.joined(separator: " "))",
            format("process start (`--version`, median of %d): %.1f ms; `true`: %.1f ms", runs, versionSeconds * 1000, trueSeconds * 1000),
        ]
    }

    public var json: [String: Any] {
        ["binary_bytes": binaryBytes, "binary_allocated_bytes": allocatedBytes, "libraries": libraries,
         "start_version_s": versionSeconds, "start_true_s": trueSeconds, "start_runs": runs]
    }
}
