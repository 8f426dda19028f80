//! Signed notes (C2SP signed-note, Ed25519) and checkpoints (C2SP tlog-checkpoint).

use super::*;

/// The key id of an Ed25519 key in a signed note:
/// `SHA-256(name | 0x0A | 0x01 | public key)[..4]`, big-endian.
pub fn key_id(name: &str, public: &[u8; 32]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', ALG_ED25519]);
    h.update(public);
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// Whether `name` may name a key: non-empty, no white space, no `+`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(char::is_whitespace) && !name.contains('+')
}

/// A verifier key (C2SP signed note): a name, a key id and an Ed25519
/// public key; written `name+hex id+base64(0x01 | public key)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    id: u32,
    key: VerifyingKey,
}

impl VerifierKey {
    /// The verifier key named `name` for `key`.
    pub fn new(name: &str, key: VerifyingKey) -> Result<Self, Invalid> {
        if !valid_name(name) {
            return Err(invalid("a key name must be non-empty, without spaces or '+'"));
        }
        Ok(Self { name: name.to_owned(), id: key_id(name, key.as_bytes()), key })
    }

    /// Parses `name+id+key` (surrounding white space ignored).
    pub fn parse(text: &str) -> Result<Self, Invalid> {
        let text = text.trim();
        let mut parts = text.splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(invalid("a verifier key is name+id+key"));
        };
        if !valid_name(name) {
            return Err(invalid("the verifier key's name is empty or has spaces or '+'"));
        }
        let id = parse_id(id).ok_or_else(|| invalid("the verifier key's id is not 8 hex digits"))?;
        let raw = B64.decode(key).map_err(|_| invalid("the verifier key is not base64"))?;
        let public: [u8; 32] = match raw.split_first() {
            Some((&ALG_ED25519, k)) => k.try_into().map_err(|_| invalid("the verifier key is not 32 bytes"))?,
            Some(_) => return Err(invalid("the verifier key is not an Ed25519 key")),
            None => return Err(invalid("the verifier key is empty")),
        };
        let key = VerifyingKey::from_bytes(&public).map_err(|_| invalid("the verifier key is not a valid point"))?;
        if id != key_id(name, &public) {
            return Err(invalid("the verifier key's id does not match its name and key"));
        }
        Ok(Self { name: name.to_owned(), id, key })
    }

    /// The key's name (the origin of its checkpoints).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Whether `sig` is this key's Ed25519 signature of `msg`.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let Ok(sig) = ed25519_dalek::Signature::from_slice(sig) else { return false };
        self.key.verify_strict(msg, &sig).is_ok()
    }
}

impl std::fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut k = vec![ALG_ED25519];
        k.extend_from_slice(self.key.as_bytes());
        write!(f, "{}+{:08x}+{}", self.name, self.id, B64.encode(k))
    }
}

fn parse_id(s: &str) -> Option<u32> {
    if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(s, 16).ok()
}

/// A signing key for notes. Its `Debug` shows the name and id only.
pub struct NoteSigner {
    name: String,
    id: u32,
    key: SigningKey,
}

impl std::fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NoteSigner({}+{:08x})", self.name, self.id)
    }
}

impl NoteSigner {
    /// The signer named `name` with the Ed25519 secret key `seed`.
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<Self, Invalid> {
        if !valid_name(name) {
            return Err(invalid("a key name must be non-empty, without spaces or '+'"));
        }
        let key = SigningKey::from_bytes(seed);
        Ok(Self { name: name.to_owned(), id: key_id(name, key.verifying_key().as_bytes()), key })
    }

    /// Parses `PRIVATE+KEY+name+id+base64(0x01 | secret key)` (Go's
    /// `note.NewSigner` form). Errors never repeat the text.
    pub fn parse(text: &str) -> Result<Self, Invalid> {
        let rest = text.trim().strip_prefix("PRIVATE+KEY+").ok_or_else(|| invalid("not a PRIVATE+KEY signer key"))?;
        let mut parts = rest.splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(invalid("a signer key is PRIVATE+KEY+name+id+key"));
        };
        let id = parse_id(id).ok_or_else(|| invalid("the signer key's id is not 8 hex digits"))?;
        let raw = B64.decode(key).map_err(|_| invalid("the signer key is not base64"))?;
        let seed: [u8; 32] = match raw.split_first() {
            Some((&ALG_ED25519, k)) => k.try_into().map_err(|_| invalid("the signer key is not 32 bytes"))?,
            _ => return Err(invalid("the signer key is not an Ed25519 key")),
        };
        let s = Self::from_seed(name, &seed)?;
        if s.id != id {
            return Err(invalid("the signer key's id does not match its name and key"));
        }
        Ok(s)
    }

    pub(super) fn encode_private(&self) -> String {
        let mut k = vec![ALG_ED25519];
        k.extend_from_slice(self.key.as_bytes());
        format!("PRIVATE+KEY+{}+{:08x}+{}", self.name, self.id, B64.encode(k))
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its verifier key.
    pub fn verifier(&self) -> VerifierKey {
        VerifierKey { name: self.name.clone(), id: self.id, key: self.key.verifying_key() }
    }

    /// Signs `text` (which must end in a newline): the signed note.
    pub fn sign(&self, text: &str) -> String {
        let sig = self.key.sign(text.as_bytes());
        let mut b = self.id.to_be_bytes().to_vec();
        b.extend_from_slice(&sig.to_bytes());
        format!("{text}\n\u{2014} {} {}\n", self.name, B64.encode(b))
    }
}

/// One signature line of a note, not verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteSignature {
    /// The key's name.
    pub name: String,
    /// The key id.
    pub id: u32,
    /// The signature bytes (after the key id).
    pub sig: Vec<u8>,
}

/// A signed note as parsed, not verified: its text and signatures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    text: String,
    sigs: Vec<NoteSignature>,
}

impl Note {
    /// Parses a signed note: UTF-8 text ending in a newline, a blank line,
    /// and one or more lines `— name base64(key id | signature)`; no
    /// control characters but newlines.
    pub fn parse(msg: &str) -> Result<Self, Invalid> {
        if msg.len() > MAX_NOTE {
            return Err(invalid(format!("the note is longer than {MAX_NOTE} bytes")));
        }
        if msg.chars().any(|c| c < ' ' && c != '\n') {
            return Err(invalid("the note has control characters"));
        }
        let split = msg.rfind("\n\n").ok_or_else(|| invalid("the note has no signature block"))?;
        let (text, sigs) = (&msg[..split + 1], &msg[split + 2..]);
        let sigs = sigs.strip_suffix('\n').ok_or_else(|| invalid("the note does not end with a newline"))?;
        let mut out = Vec::new();
        for line in sigs.split('\n') {
            if out.len() == MAX_SIGNATURES {
                return Err(invalid(format!("the note has more than {MAX_SIGNATURES} signatures")));
            }
            out.push(parse_signature(line)?);
        }
        Ok(Self { text: text.to_owned(), sigs: out })
    }

    /// The signed text (ending in a newline).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The signature lines.
    pub fn signatures(&self) -> &[NoteSignature] {
        &self.sigs
    }

    /// The text, when a signature by `key` verifies. A signature that names
    /// the key but does not verify is an error even if another does.
    pub fn verify(&self, key: &VerifierKey) -> Result<&str, Invalid> {
        let mut ok = false;
        for s in self.sigs.iter().filter(|s| s.name == key.name && s.id == key.id) {
            if !key.verify(self.text.as_bytes(), &s.sig) {
                return Err(invalid(format!(
                    "the signature by {}+{:08x} does not verify: the note was altered",
                    key.name, key.id
                )));
            }
            ok = true;
        }
        if ok {
            Ok(&self.text)
        } else {
            Err(invalid(format!("the note has no signature by {}+{:08x}", key.name, key.id)))
        }
    }

    /// The note as written.
    pub fn encode(&self) -> String {
        let mut s = self.text.clone();
        s.push('\n');
        for sig in &self.sigs {
            let mut b = sig.id.to_be_bytes().to_vec();
            b.extend_from_slice(&sig.sig);
            s.push_str(&format!("\u{2014} {} {}\n", sig.name, B64.encode(b)));
        }
        s
    }
}

fn parse_signature(line: &str) -> Result<NoteSignature, Invalid> {
    let rest = line.strip_prefix("\u{2014} ").ok_or_else(|| invalid("a signature line does not start with '— '"))?;
    let (name, b64) = rest.split_once(' ').ok_or_else(|| invalid("a signature line is '— name signature'"))?;
    if !valid_name(name) {
        return Err(invalid("a signature names an invalid key name"));
    }
    let raw = B64.decode(b64).map_err(|_| invalid("a signature is not base64"))?;
    if raw.len() < 5 {
        return Err(invalid("a signature is too short"));
    }
    Ok(NoteSignature {
        name: name.to_owned(),
        id: u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]),
        sig: raw[4..].to_vec(),
    })
}

/// Splits a file of notes written one after another into the notes (each
/// ending with its last signature line) and what follows the last whole
/// note (empty unless a write was cut short).
pub fn split_notes(text: &str) -> (Vec<&str>, &str) {
    let mut notes = Vec::new();
    let mut start = 0;
    let mut pos = 0;
    // Within a note: before its blank line, or in its signature lines.
    let mut in_sigs = false;
    while pos < text.len() {
        let Some(nl) = text[pos..].find('\n') else { break };
        let line = &text[pos..pos + nl];
        let next = pos + nl + 1;
        if in_sigs {
            if line.starts_with('\u{2014}') {
                pos = next;
                // The note ends here unless another signature line follows.
                if !text[next..].starts_with('\u{2014}') {
                    notes.push(&text[start..next]);
                    start = next;
                    in_sigs = false;
                }
                continue;
            }
            // A blank line followed by text: the blank line was inside the text.
            in_sigs = false;
        }
        if line.is_empty() && text[next..].starts_with('\u{2014}') {
            in_sigs = true;
        }
        pos = next;
    }
    (notes, &text[start..])
}

/// A checkpoint (C2SP tlog-checkpoint): the log's origin, its size and
/// root hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's name (the key's name).
    pub origin: String,
    /// Records in the tree.
    pub size: u64,
    /// Its RFC 6962 root hash.
    pub root: Hash,
}

impl Checkpoint {
    /// The note text: `origin\nsize\nbase64(root)\n`.
    pub fn body(&self) -> String {
        format!("{}\n{}\n{}\n", self.origin, self.size, B64.encode(self.root))
    }

    /// Parses a checkpoint's text (three lines; piiwatch writes no
    /// extension lines and accepts none).
    pub fn parse_body(text: &str) -> Result<Self, Invalid> {
        let body = text.strip_suffix('\n').ok_or_else(|| invalid("the checkpoint does not end with a newline"))?;
        let lines: Vec<&str> = body.split('\n').collect();
        let [origin, size, root] = lines[..] else {
            return Err(invalid(format!("the checkpoint has {} lines, not 3 (origin, size, root)", lines.len())));
        };
        if origin.is_empty() {
            return Err(invalid("the checkpoint's origin is empty"));
        }
        let canonical =
            !size.is_empty() && size.bytes().all(|b| b.is_ascii_digit()) && (size == "0" || !size.starts_with('0'));
        let size: u64 = size
            .parse()
            .ok()
            .filter(|_| canonical)
            .ok_or_else(|| invalid("the checkpoint's size is not a decimal number"))?;
        let root = decode_hash(root).map_err(|_| invalid("the checkpoint's root is not a base64 SHA-256"))?;
        Ok(Self { origin: origin.to_owned(), size, root })
    }

    /// Parses a signed checkpoint note and checks it: signed by `key`,
    /// origin the key's name.
    pub fn open(note: &str, key: &VerifierKey) -> Result<Self, Invalid> {
        let n = Note::parse(note)?;
        let cp = Self::parse_body(n.verify(key)?)?;
        if cp.origin != key.name {
            return Err(invalid(format!("the checkpoint is for origin {}, the key for {}", cp.origin, key.name)));
        }
        Ok(cp)
    }
}

/// Base64 of a hash.
pub fn encode_hash(h: &Hash) -> String {
    B64.encode(h)
}

/// A base64 SHA-256.
pub fn decode_hash(s: &str) -> Result<Hash, Invalid> {
    let v = B64.decode(s).map_err(|_| invalid("not base64"))?;
    v.try_into().map_err(|_| invalid("not 32 bytes"))
}
