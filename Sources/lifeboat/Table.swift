/// A text table: each column as wide as its widest cell, two spaces apart, no trailing blanks
/// (long disk names and labels widen their column instead of breaking the rows).
func printTable(_ header: [String], _ rows: [[String]]) {
    let widths = header.indices.map { i in ([header] + rows).map { i < $0.count ? $0[i].count : 0 }.max() ?? 0 }
    for row in [header] + rows {
        var line = ""
        for (i, cell) in row.enumerated() {
            line += cell
            if i < row.count - 1 { line += String(repeating: " ", count: widths[i] - cell.count + 2) }
        }
        while line.hasSuffix(" ") { line.removeLast() }
        print(line)
    }
}
