import DMA

/// Builds the data pointer of a command from its data pages (NVMe Base
/// Specification 2.0, §4.1.1), as Linux's `nvme_pci_setup_prps` does: PRP1 is
/// the first page; PRP2 is the second page when there are exactly two, or else
/// a PRP list. A list page holds 512 entries; when more are needed its last entry
/// points to the next list page (a chain).
public enum PRPList {
    public static let entriesPerPage = HostMemory.pageSize / 8

    /// How many list pages `pageCount` data pages need.
    public static func listPagesNeeded(forDataPages pageCount: Int) -> Int {
        guard pageCount > 2 else { return 0 }
        let entries = pageCount - 1
        // Each list page but the last gives one entry to the chain pointer.
        if entries <= entriesPerPage { return 1 }
        return 1 + (entries - entriesPerPage + (entriesPerPage - 2)) / (entriesPerPage - 1)
    }

    /// Writes the list for `pages` (when needed) into `listPages`, which must hold
    /// at least ``listPagesNeeded(forDataPages:)`` page addresses. Returns PRP1 and
    /// PRP2; PRP1 carries `firstOffset`, where the data starts in the first page
    /// (dword aligned; every other entry is a whole page).
    public static func build<Pages: RandomAccessCollection<UInt64>, Lists: RandomAccessCollection<UInt64>>(
        pages: Pages, listPages: Lists, memory: HostMemory, firstOffset: Int = 0
    ) -> (prp1: UInt64, prp2: UInt64) {
        precondition(!pages.isEmpty)
        let first = pages[pages.startIndex] + UInt64(firstOffset)
        switch pages.count {
        case 1: return (first, 0)
        case 2: return (first, pages[pages.index(after: pages.startIndex)])
        default: break
        }
        precondition(listPages.count >= listPagesNeeded(forDataPages: pages.count), "not enough PRP list pages")
        var list = listPages.startIndex
        var slot = 0
        // The list page is ours and inside the arena.
        var page = memory.pointer(at: listPages[list], length: HostMemory.pageSize)!
        var remaining = pages.count - 1
        for address in pages.dropFirst() {
            if slot == entriesPerPage - 1 && remaining > 1 {
                let next = listPages.index(after: list)
                page.storeBytes(of: listPages[next].littleEndian, toByteOffset: slot * 8, as: UInt64.self)
                list = next
                page = memory.pointer(at: listPages[list], length: HostMemory.pageSize)!
                slot = 0
            }
            page.storeBytes(of: address.littleEndian, toByteOffset: slot * 8, as: UInt64.self)
            slot += 1
            remaining -= 1
        }
        return (first, listPages[listPages.startIndex])
    }
}
