import M3Index
import M3Model

// Source compatibility with the API before `IndexOptions` and typed `IndexSettings`.
extension SearchIndex {
    @available(*, deprecated, message: "use init(path:model:options:) with IndexOptions")
    public convenience init(path: String, model: BGEM3, create: Bool = true, maxLength: Int = 512, overlap: Int = 64,
                            pooling: Pooling = .cls, normalize: Bool = true, hnswM: Int = 16, hnswEfConstruction: Int = 200,
                            colbertStorage: ColBERTStorage? = nil, denseStorage: DenseStorage? = nil,
                            colbertPruning: ColBERTPruning? = nil, readOnly: Bool = false) throws {
        try self.init(path: path, model: model, options: IndexOptions(
            create: create, readOnly: readOnly, maxLength: maxLength, overlap: overlap, pooling: pooling, normalize: normalize,
            hnswM: hnswM, hnswEfConstruction: hnswEfConstruction, colbertStorage: colbertStorage, denseStorage: denseStorage,
            colbertPruning: colbertPruning))
    }

    @available(*, deprecated, renamed: "settings.colbertStorage")
    public var colbertStorage: ColBERTStorage { settings.colbertStorage }

    @available(*, deprecated, renamed: "settings.denseStorage")
    public var denseStorage: DenseStorage { settings.denseStorage }

    @available(*, deprecated, renamed: "settings.colbertPruning")
    public var colbertPruning: ColBERTPruning { settings.colbertPruning }
}
