//! A small, hardened XML tree reader on top of quick-xml.
//!
//! Refuses any DOCTYPE (so no DTD, no internal or external entities, no
//! billion laughs), resolves only the five predefined entities and character
//! references, and caps input size, nesting depth, element count and the
//! length of every text node and attribute value. Memory is therefore bounded
//! by a small multiple of [`Limits::max_input_bytes`].

use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;

use crate::iodef::IodefError;

/// Caps applied while reading an XML document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted document, in bytes.
    pub max_input_bytes: usize,
    /// Deepest accepted element nesting (the root is depth 1).
    pub max_depth: usize,
    /// Longest accepted text node or attribute value, in bytes.
    pub max_value_bytes: usize,
    /// Most elements accepted in one document.
    pub max_elements: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            // The document is attached unchanged, so it must fit an attachment.
            max_input_bytes: poc_proto::limits::MAX_ATTACHMENT_BYTES,
            max_depth: 64,
            max_value_bytes: 64 * 1024,
            max_elements: 100_000,
        }
    }
}

/// One element: namespace URI, local name, attributes (local names, only
/// unprefixed or IODEF/xml-namespace ones are relevant here) and children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Element {
    pub(crate) ns: Option<String>,
    pub(crate) name: String,
    pub(crate) attrs: Vec<(String, String)>,
    pub(crate) text: String,
    pub(crate) children: Vec<Element>,
}

impl Element {
    pub(crate) fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn is(&self, ns: &str, name: &str) -> bool {
        self.ns.as_deref() == Some(ns) && self.name == name
    }

    /// Direct children in namespace `ns` named `name`.
    pub(crate) fn children_named<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
    ) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.is(ns, name))
    }

    pub(crate) fn child(&self, ns: &str, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.is(ns, name))
    }
}

fn syntax(e: impl std::fmt::Display) -> IodefError {
    IodefError::Syntax(e.to_string())
}

/// Resolves one `&name;` reference body (without `&` and `;`).
fn resolve_entity(name: &str) -> Result<char, IodefError> {
    match name {
        "amp" => Ok('&'),
        "lt" => Ok('<'),
        "gt" => Ok('>'),
        "quot" => Ok('"'),
        "apos" => Ok('\''),
        _ => {
            let code =
                if let Some(hex) = name.strip_prefix("#x").or_else(|| name.strip_prefix("#X")) {
                    u32::from_str_radix(hex, 16).ok()
                } else if let Some(dec) = name.strip_prefix('#') {
                    dec.parse::<u32>().ok()
                } else {
                    return Err(IodefError::UndefinedEntity(name.chars().take(64).collect()));
                };
            code.and_then(char::from_u32)
                .ok_or_else(|| IodefError::Syntax(format!("bad character reference &{name};")))
        }
    }
}

/// Unescapes an attribute value (predefined entities and character references only).
fn unescape(raw: &str) -> Result<String, IodefError> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(pos) = rest.find('&') {
        out.push_str(rest.get(..pos).unwrap_or_default());
        let after = rest.get(pos + 1..).unwrap_or_default();
        let end = after
            .find(';')
            .ok_or_else(|| IodefError::Syntax("unterminated entity reference".into()))?;
        out.push(resolve_entity(after.get(..end).unwrap_or_default())?);
        rest = after.get(end + 1..).unwrap_or_default();
    }
    out.push_str(rest);
    Ok(out)
}

fn push_text(target: &mut String, text: &str, limits: &Limits) -> Result<(), IodefError> {
    if target.len() + text.len() > limits.max_value_bytes {
        return Err(IodefError::ValueTooLong {
            limit: limits.max_value_bytes,
        });
    }
    target.push_str(text);
    Ok(())
}

fn owned_ns(ns: ResolveResult<'_>) -> Result<Option<String>, IodefError> {
    Ok(match ns {
        ResolveResult::Bound(n) => Some(String::from_utf8_lossy(n.as_ref()).into_owned()),
        ResolveResult::Unbound => None,
        ResolveResult::Unknown(p) => {
            return Err(IodefError::Syntax(format!(
                "undeclared namespace prefix {:?}",
                String::from_utf8_lossy(&p)
            )));
        }
    })
}

fn element_from(
    reader: &NsReader<&[u8]>,
    ns: Option<String>,
    start: &BytesStart<'_>,
    limits: &Limits,
) -> Result<Element, IodefError> {
    let name = String::from_utf8_lossy(start.local_name().as_ref()).into_owned();
    let mut attrs = Vec::new();
    for attr in start.attributes() {
        let attr = attr.map_err(syntax)?;
        if attr.value.len() > limits.max_value_bytes {
            return Err(IodefError::ValueTooLong {
                limit: limits.max_value_bytes,
            });
        }
        let key = attr.key;
        let (attr_ns, local) = reader.resolve_attribute(key);
        // xmlns declarations are not data.
        if key.as_ref().starts_with(b"xmlns") {
            continue;
        }
        let local = String::from_utf8_lossy(local.as_ref()).into_owned();
        let local = match attr_ns {
            ResolveResult::Bound(n) if n.as_ref() == b"http://www.w3.org/XML/1998/namespace" => {
                format!("xml:{local}")
            }
            ResolveResult::Bound(n) if n.as_ref() != crate::iodef::IODEF_NS.as_bytes() => {
                // Attributes of foreign namespaces (e.g. xsi:schemaLocation) are
                // kept under their qualified name so they never shadow IODEF ones.
                String::from_utf8_lossy(key.as_ref()).into_owned()
            }
            _ => local,
        };
        let raw = std::str::from_utf8(&attr.value).map_err(syntax)?;
        attrs.push((local, unescape(raw)?));
    }
    Ok(Element {
        ns,
        name,
        attrs,
        text: String::new(),
        children: Vec::new(),
    })
}

/// Parses `input` into its root element, enforcing `limits`.
pub(crate) fn parse(input: &[u8], limits: &Limits) -> Result<Element, IodefError> {
    if input.len() > limits.max_input_bytes {
        return Err(IodefError::TooLarge {
            size: input.len(),
            limit: limits.max_input_bytes,
        });
    }
    let mut reader = NsReader::from_reader(input);
    reader.config_mut().check_end_names = true;
    reader.config_mut().expand_empty_elements = false;
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut elements = 0usize;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let (ns, event) = reader.read_resolved_event_into(&mut buf).map_err(syntax)?;
        let ns = match &event {
            Event::Start(_) | Event::Empty(_) => owned_ns(ns)?,
            _ => None,
        };
        match event {
            Event::DocType(_) => return Err(IodefError::DoctypeRefused),
            Event::Start(start) | Event::Empty(start) if root.is_some() => {
                let _ = start;
                return Err(IodefError::Syntax("content after the root element".into()));
            }
            Event::Start(start) => {
                elements += 1;
                if stack.len() + 1 > limits.max_depth {
                    return Err(IodefError::TooDeep {
                        limit: limits.max_depth,
                    });
                }
                if elements > limits.max_elements {
                    return Err(IodefError::TooManyElements {
                        limit: limits.max_elements,
                    });
                }
                stack.push(element_from(&reader, ns, &start, limits)?);
            }
            Event::Empty(start) => {
                elements += 1;
                if stack.len() + 1 > limits.max_depth {
                    return Err(IodefError::TooDeep {
                        limit: limits.max_depth,
                    });
                }
                if elements > limits.max_elements {
                    return Err(IodefError::TooManyElements {
                        limit: limits.max_elements,
                    });
                }
                let element = element_from(&reader, ns, &start, limits)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(element),
                    None => root = Some(element),
                }
            }
            Event::End(_) => {
                let element = stack
                    .pop()
                    .ok_or_else(|| IodefError::Syntax("unexpected end tag".into()))?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(element),
                    None => root = Some(element),
                }
            }
            Event::Text(text) => {
                let text = text.decode().map_err(syntax)?;
                match stack.last_mut() {
                    Some(current) => push_text(&mut current.text, &text, limits)?,
                    None if text.trim().is_empty() => {}
                    None => return Err(IodefError::Syntax("text outside the root element".into())),
                }
            }
            Event::CData(data) => {
                let text = data.decode().map_err(syntax)?;
                if let Some(current) = stack.last_mut() {
                    push_text(&mut current.text, &text, limits)?;
                }
            }
            Event::GeneralRef(reference) => {
                let name = reference.decode().map_err(syntax)?;
                let c = resolve_entity(&name)?;
                if let Some(current) = stack.last_mut() {
                    let mut tmp = [0u8; 4];
                    push_text(&mut current.text, c.encode_utf8(&mut tmp), limits)?;
                }
            }
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(IodefError::Syntax("document ends inside an element".into()));
    }
    root.ok_or_else(|| IodefError::Syntax("no root element".into()))
}
