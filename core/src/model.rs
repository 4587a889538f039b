//! Opening a pack: header, manifest and tensor table checked against the canonical layout.

use crate::config::ModelConfig;
use crate::error::{Error, FormatError};
use crate::format::{
    ALIGNMENT, ENTRY_BYTES, FORMAT_VERSION, HEADER_BYTES, Header, INDEX_SLOT_BYTES, MAGIC,
    MAX_MANIFEST_BYTES, ManifestHead, TensorEntry, TensorId,
};
use crate::kernels::Kernels;
use crate::layout::Layout;
use crate::storage::Storage;
use crate::stream::{Source, TensorStream};
use crate::workspace::{Workspace, WorkspaceSpec};

/// Manifest bytes read per storage call while opening (a handful of table entries).
const MANIFEST_READ: usize = 6 * ENTRY_BYTES;
/// Longest manifest head accepted: config, scheme with 32 outlier channels, and counts.
const MAX_HEAD_BYTES: usize = 192;

/// A validated pack on some storage.
pub struct Model<S> {
    pub(crate) src: Source<S>,
    pub(crate) layout: Layout,
    pub(crate) verify: bool,
    pub(crate) kernels: Kernels,
}

impl<S: Storage> Model<S> {
    /// Reads and checks the header, manifest and every table entry; reads no weights.
    pub fn open(storage: S) -> Result<Self, Error<S::Error>> {
        let mut src = Source { storage, bytes_read: 0 };
        let size = src.storage.size().map_err(|source| Error::Storage {
            source,
            offset: 0,
            tensor: None,
        })?;
        if size < HEADER_BYTES as u64 {
            // Too short for a header: a cut pack if it starts like one, else not a pack at all.
            let mut start = [0u8; 4];
            let n = (size as usize).min(start.len());
            src.read_exact(0, &mut start[..n], None)?;
            if start[..n] != MAGIC[..n] {
                return Err(FormatError::BadMagic { found: start }.into());
            }
            return Err(FormatError::Truncated { needed: HEADER_BYTES as u64, found: size }.into());
        }
        let mut raw = [0u8; HEADER_BYTES];
        src.read_exact(0, &mut raw, None)?;
        let (magic, header) = Header::parse(&raw);
        if magic != MAGIC {
            return Err(FormatError::BadMagic { found: magic }.into());
        }
        if header.version != FORMAT_VERSION {
            let found = header.version;
            return Err(FormatError::UnsupportedVersion { found, supported: FORMAT_VERSION }.into());
        }
        if header.manifest_len > MAX_MANIFEST_BYTES {
            let len = header.manifest_len;
            return Err(FormatError::ManifestTooLarge { len, max: MAX_MANIFEST_BYTES }.into());
        }
        let manifest_end = HEADER_BYTES as u64 + u64::from(header.manifest_len);
        if size < manifest_end {
            return Err(FormatError::Truncated { needed: manifest_end, found: size }.into());
        }
        check_manifest_crc(&mut src, &header)?;
        let layout = read_head(&mut src, &header, size)?;
        check_table(&mut src, &layout)?;
        Ok(Self { src, layout, verify: false, kernels: Kernels::native() })
    }

    /// Model shape.
    pub fn config(&self) -> &ModelConfig {
        self.layout.config()
    }

    /// Where each tensor lives, and their formats.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Every byte read from the storage so far, manifest included.
    pub fn bytes_read(&self) -> u64 {
        self.src.bytes_read
    }

    /// Turns CRC checking of every tensor the forward pass reads in full on or off.
    ///
    /// Checking costs one CRC32 per weight byte; a host run typically checks the first step
    /// only, which reads every tensor.
    pub fn set_verify(&mut self, on: bool) {
        self.verify = on;
    }

    /// Uses `kernels` for the forward pass from now on (they all give the same bits; the
    /// default is [`Kernels::native`]).
    pub fn set_kernels(&mut self, kernels: Kernels) {
        self.kernels = kernels;
    }

    /// The kernels the forward pass uses.
    pub fn kernels(&self) -> &Kernels {
        &self.kernels
    }

    /// Bytes of working memory a forward pass needs with this spec (KV cache excluded).
    pub fn workspace_bytes(&self, spec: &WorkspaceSpec) -> usize {
        Workspace::bytes(&self.layout, spec)
    }

    /// Carves a workspace for this model from `mem`.
    pub fn workspace<'w>(
        &self,
        spec: &WorkspaceSpec,
        mem: &'w mut [f32],
    ) -> Result<Workspace<'w>, Error<S::Error>> {
        Workspace::new(&self.layout, spec, mem)
    }

    /// Reads every tensor and tokenizer section and checks its CRC; the first mismatch is
    /// the error (tensors in file order, then the vocabulary, then the BPE index).
    pub fn verify_all(&mut self, ws: &mut Workspace<'_>) -> Result<(), Error<S::Error>> {
        for index in 0..self.layout.tensor_count() {
            self.verify_tensor(ws, self.layout.id_at(index))?;
        }
        self.verify_tokenizer(ws)
    }

    /// Checks the CRCs of what a forward pass never reads whole — `wpe` (one row per
    /// position) and the tokenizer sections (one token at a time) — so that, with
    /// [`Self::set_verify`] on for the first pass, a run has checked every byte it uses.
    pub fn verify_unstreamed(&mut self, ws: &mut Workspace<'_>) -> Result<(), Error<S::Error>> {
        self.verify_tensor(ws, TensorId::global(crate::format::TensorKind::Wpe))?;
        self.verify_tokenizer(ws)
    }

    fn verify_tensor(
        &mut self,
        ws: &mut Workspace<'_>,
        id: TensorId,
    ) -> Result<(), Error<S::Error>> {
        let crc = table_crc(&mut self.src, &self.layout, id)?;
        let entry = self.layout.expected_entry(id);
        let scratch = &mut ws.scratch;
        let (chunk, chunk_bytes) = (&mut *scratch.chunk, scratch.chunk_bytes);
        TensorStream::new(&mut self.src, chunk, chunk_bytes, id, entry.offset, entry.len, Some(crc))
            .finish()
    }

    fn verify_tokenizer(&mut self, ws: &mut Workspace<'_>) -> Result<(), Error<S::Error>> {
        let Some(t) = self.layout.tokenizer().copied() else { return Ok(()) };
        let chunk = &mut ws.scratch.chunk[..ws.scratch.chunk_bytes];
        let index_len = u64::from(t.index_slots) * INDEX_SLOT_BYTES as u64;
        let sections = [
            ("vocabulary", t.vocab_offset, t.vocab_len, t.vocab_crc),
            ("index", t.index_offset, index_len, t.index_crc),
        ];
        for (section, offset, len, expected) in sections {
            if section_crc(&mut self.src, chunk, offset, len)? != expected {
                return Err(FormatError::TokenizerCrc { section }.into());
            }
        }
        Ok(())
    }

    /// The storage.
    pub fn storage(&self) -> &S {
        &self.src.storage
    }

    /// The storage, mutably: after a failed read a board may re-initialise its card (or a
    /// test re-arm its fault) before retrying the step.
    pub fn storage_mut(&mut self) -> &mut S {
        &mut self.src.storage
    }

    /// Gives the storage back.
    pub fn into_storage(self) -> S {
        self.src.storage
    }
}

/// The CRC the tensor table records for `id`, read from storage.
pub(crate) fn table_crc<S: Storage, KE>(
    src: &mut Source<S>,
    layout: &Layout,
    id: TensorId,
) -> Result<u32, Error<S::Error, KE>> {
    let offset = layout.entry_offset(layout.index_of(id));
    let mut raw = [0u8; ENTRY_BYTES];
    src.read_exact(offset, &mut raw, Some(id))?;
    let entry: TensorEntry =
        postcard::from_bytes(&raw).map_err(|_| FormatError::ManifestDecode { offset })?;
    Ok(entry.crc32)
}

/// CRC32 of `len` bytes at `offset`, read through `chunk`.
fn section_crc<S: Storage>(
    src: &mut Source<S>,
    chunk: &mut [u8],
    offset: u64,
    len: u64,
) -> Result<u32, Error<S::Error>> {
    let mut hasher = crc32fast::Hasher::new();
    let mut at = offset;
    while at < offset + len {
        let n = (offset + len - at).min(chunk.len() as u64) as usize;
        src.read_exact(at, &mut chunk[..n], None)?;
        hasher.update(&chunk[..n]);
        at += n as u64;
    }
    Ok(hasher.finalize())
}

fn check_manifest_crc<S: Storage>(
    src: &mut Source<S>,
    header: &Header,
) -> Result<(), Error<S::Error>> {
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = [0u8; MANIFEST_READ];
    let end = HEADER_BYTES as u64 + u64::from(header.manifest_len);
    let mut at = HEADER_BYTES as u64;
    while at < end {
        let n = (end - at).min(MANIFEST_READ as u64) as usize;
        src.read_exact(at, &mut buf[..n], None)?;
        hasher.update(&buf[..n]);
        at += n as u64;
    }
    let found = hasher.finalize();
    if found != header.manifest_crc {
        return Err(FormatError::ManifestCrc { expected: header.manifest_crc, found }.into());
    }
    Ok(())
}

fn read_head<S: Storage>(
    src: &mut Source<S>,
    header: &Header,
    size: u64,
) -> Result<Layout, Error<S::Error>> {
    let mut buf = [0u8; MAX_HEAD_BYTES];
    let n = (header.manifest_len as usize).min(MAX_HEAD_BYTES);
    src.read_exact(HEADER_BYTES as u64, &mut buf[..n], None)?;
    let offset = HEADER_BYTES as u64;
    let (head, rest): (ManifestHead, _) =
        postcard::take_from_bytes(&buf[..n]).map_err(|_| FormatError::ManifestDecode { offset })?;
    let head_len = (n - rest.len()) as u64;
    if head.alignment != ALIGNMENT {
        return Err(FormatError::Alignment { found: head.alignment, expected: ALIGNMENT }.into());
    }
    let mut layout = Layout::new(head.config, head.quant, head_len)?;
    if let Some(tokenizer) = head.tokenizer {
        layout = layout.with_tokenizer(tokenizer)?;
    }
    if u64::from(head.tensor_count) != layout.tensor_count() {
        let (expected, found) = (layout.tensor_count(), head.tensor_count);
        return Err(FormatError::TensorCount { expected, found }.into());
    }
    if u64::from(header.manifest_len) != layout.manifest_len() {
        let (claimed, needed) = (header.manifest_len, layout.manifest_len());
        return Err(FormatError::ManifestLength { claimed, needed }.into());
    }
    if head.file_len != layout.file_len() {
        let (expected, found) = (layout.file_len(), head.file_len);
        return Err(FormatError::FileLen { expected, found }.into());
    }
    if size < layout.file_len() {
        return Err(FormatError::Truncated { needed: layout.file_len(), found: size }.into());
    }
    Ok(layout)
}

fn check_table<S: Storage>(src: &mut Source<S>, layout: &Layout) -> Result<(), Error<S::Error>> {
    let mut buf = [0u8; MANIFEST_READ];
    let count = layout.tensor_count();
    let mut index = 0;
    while index < count {
        let batch = (count - index).min((MANIFEST_READ / ENTRY_BYTES) as u64);
        let start = layout.entry_offset(index);
        let bytes = &mut buf[..batch as usize * ENTRY_BYTES];
        src.read_exact(start, bytes, None)?;
        for (k, raw) in bytes.chunks_exact(ENTRY_BYTES).enumerate() {
            let offset = start + (k * ENTRY_BYTES) as u64;
            let found: TensorEntry =
                postcard::from_bytes(raw).map_err(|_| FormatError::ManifestDecode { offset })?;
            compare_entry(layout, index + k as u64, &found)?;
        }
        index += batch;
    }
    Ok(())
}

fn compare_entry(layout: &Layout, index: u64, found: &TensorEntry) -> Result<(), FormatError> {
    let expected = layout.expected_entry(layout.id_at(index));
    if found.id != expected.id {
        let index = index as u32;
        return Err(FormatError::WrongTensor { index, expected: expected.id, found: found.id });
    }
    if found.format != expected.format {
        let (tensor, expected, found) = (expected.id, expected.format, found.format);
        return Err(FormatError::TensorFormat { tensor, expected, found });
    }
    let fields = [
        ("rows", u64::from(expected.rows), u64::from(found.rows)),
        ("cols", u64::from(expected.cols), u64::from(found.cols)),
        ("offset", expected.offset, found.offset),
        ("len", expected.len, found.len),
    ];
    for (field, want, got) in fields {
        if want != got {
            let tensor = expected.id;
            return Err(FormatError::TensorField { tensor, field, expected: want, found: got });
        }
    }
    Ok(())
}
