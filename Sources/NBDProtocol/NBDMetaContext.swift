/// A metadata context: its name and the id the server assigned to it.
///
/// proto.md, "Metadata querying" and `NBD_REP_META_CONTEXT`. The id is what
/// `NBD_REPLY_TYPE_BLOCK_STATUS` chunks carry; it is 0 in replies to
/// `NBD_OPT_LIST_META_CONTEXT`.
public struct NBDMetaContext: Hashable, Sendable {
    public var id: UInt32
    public var name: String

    public init(id: UInt32, name: String) {
        self.id = id
        self.name = name
    }
}
