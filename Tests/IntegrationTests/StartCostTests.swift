import Benchmarks
import Foundation
import Testing

/// What `bench apply` reports about the binary, checked against binutils and the kernel's own listing.
struct StartCostTests {
    /// The allocated sections' total, as readelf lists the section headers (flag A, not NOBITS).
    @Test func theLoadedSizeIsTheAllocatedSections() throws {
        let (file, allocated) = try StartCost.elfSizes(returnpathBinary)
        let listing = try execute("/usr/bin/env", ["readelf", "-S", "-W", returnpathBinary])
        #expect(listing.status == 0, "\(listing.errors)")
        var expected = 0
        for line in listing.output.split(separator: "\n") {
            // "  [17] name TYPE ADDRESS OFFSET SIZE ES FLG LK INF AL" (the name never has spaces here)
            let fields = line.replacing("[ ", with: "[").split(separator: " ")
            guard fields.count >= 8, fields[0].hasPrefix("["), fields[0] != "[Nr]" else { continue }
            if fields[2] != "NOBITS", fields[7].contains("A"), let size = Int(fields[5], radix: 16) { expected += size }
        }
        #expect(expected > 0 && allocated == expected)
        #expect(file == (try FileManager.default.attributesOfItem(atPath: returnpathBinary)[.size] as? Int))
        #expect(throws: BenchmarkError.self) { try StartCost.elfSizes("/proc/self/status") }
    }

    /// This process's libraries by soname: every library ldd lists for this test binary is among them (the test
    /// process may have loaded more since), each name once.
    @Test func theLoadedLibrariesAreTheLoadersOwn() throws {
        let libraries = StartCost.loadedLibraries()
        let ldd = try execute("/usr/bin/env", ["ldd", try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")])
        #expect(ldd.status == 0, "\(ldd.errors)")
        let listed = ldd.output.split(separator: "\n").compactMap { line -> String? in
            guard let first = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).first, !first.hasPrefix("linux-vdso") else { return nil }
            return first.split(separator: "/").last.map(String.init)
        }
        #expect(!listed.isEmpty && listed.allSatisfy(libraries.contains), "ldd: \(listed), loaded: \(libraries)")
        #expect(libraries.contains("libc.so.6"))
        #expect(Set(libraries).count == libraries.count && libraries == libraries.sorted())
    }
}
