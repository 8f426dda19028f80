//! A small OCSF event validator for tests, reading the schema source
//! (`events/`, `objects/`, `profiles/`, `dictionary.json`, `categories.json`)
//! with nothing but serde_json.
//!
//! It compiles the schema the way the OCSF server does: a class or object's
//! attributes are those of what it `extends`, deep-merged under those of the
//! files it `$include`s, deep-merged under its own; each attribute is then
//! deep-merged over its dictionary entry, so a class can override
//! `requirement`, `type` or `profile` and adds to (never removes from) the
//! dictionary's `enum`. An attribute included from a profile belongs to that
//! profile unless a class redefines it with `"profile": null`; it is allowed
//! (and, when required, required) only when the event lists the profile in
//! `metadata.profiles`, as the OCSF server's validator does.
//!
//! Checked: required attributes, unknown attributes (anywhere but inside
//! free-form `object`-typed attributes such as `unmapped`), JSON types from
//! the dictionary types (integers must be integral), `max_len` and `range`,
//! `ip_t` addresses, enum values, `X_dt` beside each timestamp `X` under
//! the `datetime` profile, object constraints (`at_least_one`,
//! `just_one`), `class_uid`, `category_uid`, `type_uid`, `metadata.profiles`
//! and the form of `metadata.version`. Not checked: the other type regexes
//! and what the OCSF server only warns about (recommended attributes,
//! deprecations, enum sibling captions).
#![allow(clippy::print_stdout, clippy::print_stderr)] // a report for people
#![allow(dead_code)] // test files use different parts

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

type Attrs = Map<String, Value>;

/// One attribute of a compiled class or object.
#[derive(Debug, Clone)]
pub struct Attr {
    /// Dictionary type (`string_t`, ...) or object name; None when the dictionary lacks the attribute.
    pub ty: Option<String>,
    /// Whether the value is an array of `ty`.
    pub is_array: bool,
    /// `required`, `recommended`, `optional` (or None).
    pub requirement: Option<String>,
    /// Allowed values (enum key as a string) and their captions.
    pub enum_values: Option<BTreeMap<String, String>>,
    /// The profile the attribute belongs to, if any.
    pub profile: Option<String>,
}

impl Attr {
    /// Whether the attribute must be present (when its profile, if any, is declared).
    pub fn is_required(&self) -> bool {
        self.requirement.as_deref() == Some("required")
    }
}

/// A compiled class or object.
#[derive(Debug, Clone)]
pub struct Item {
    /// The `name` in the schema file.
    pub name: String,
    /// The class uid (category uid × 1000 + class uid) for classes, None for objects.
    pub class_uid: Option<i64>,
    /// The category uid for classes.
    pub category_uid: Option<i64>,
    /// Attributes by name.
    pub attributes: BTreeMap<String, Attr>,
    /// `at_least_one` / `just_one` constraints.
    pub constraints: Vec<(String, Vec<String>)>,
}

impl Item {
    fn describe(&self) -> String {
        match self.class_uid {
            Some(uid) => format!("class {} ({uid})", self.name),
            None => format!("object {}", self.name),
        }
    }
}

/// A loaded OCSF schema.
#[derive(Debug)]
pub struct Schema {
    /// `version.json`'s version.
    pub version: String,
    classes: HashMap<i64, Item>,
    objects: HashMap<String, Item>,
    types: Attrs,
    profiles: BTreeSet<String>,
}

/// Raw schema files, before compilation.
struct Raw {
    dir: PathBuf,
    classes: HashMap<String, Value>,
    objects: HashMap<String, Value>,
    dictionary: Attrs,
    categories: HashMap<String, i64>,
    includes: HashMap<String, Value>,
}

fn read_json(path: &Path) -> Result<Value, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

fn json_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries {
        let path = entry.map_err(|e| format!("{}: {e}", dir.display()))?.path();
        if path.is_dir() {
            json_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
    Ok(())
}

fn by_name(dir: &Path) -> Result<HashMap<String, Value>, String> {
    let mut files = Vec::new();
    json_files(dir, &mut files)?;
    let mut map = HashMap::new();
    for path in files {
        let doc = read_json(&path)?;
        let name = doc["name"].as_str().ok_or_else(|| format!("{}: no name", path.display()))?.to_owned();
        if map.insert(name.clone(), doc).is_some() {
            return Err(format!("{}: duplicate name {name}", path.display()));
        }
    }
    Ok(map)
}

/// Merges `over` into `base`, objects key by key, everything else replaced.
fn deep_merge(base: &mut Attrs, over: &Attrs) {
    for (k, v) in over {
        match (base.get_mut(k), v) {
            (Some(Value::Object(b)), Value::Object(o)) => deep_merge(b, o),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

fn include_list(attrs: &Attrs) -> Vec<String> {
    match attrs.get("$include") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
        _ => Vec::new(),
    }
}

impl Raw {
    /// An item's attributes with its includes resolved (not its parent).
    fn own_attrs(&mut self, doc: &Value, stack: &mut Vec<String>) -> Result<Attrs, String> {
        let own = doc["attributes"].as_object().cloned().unwrap_or_default();
        let mut merged = Attrs::new();
        for inc in include_list(&own) {
            if stack.contains(&inc) {
                return Err(format!("$include cycle through {inc}"));
            }
            let included = match self.includes.get(&inc) {
                Some(v) => v.clone(),
                None => {
                    let v = read_json(&self.dir.join(&inc))?;
                    self.includes.insert(inc.clone(), v.clone());
                    v
                }
            };
            stack.push(inc.clone());
            let mut attrs = self.own_attrs(&included, stack)?;
            stack.pop();
            if included["meta"] == "profile" {
                let profile = included["name"].clone();
                for attr in attrs.values_mut() {
                    if let Value::Object(a) = attr {
                        a.entry("profile").or_insert_with(|| profile.clone());
                    }
                }
            }
            deep_merge(&mut merged, &attrs);
        }
        let mut own = own;
        own.remove("$include");
        deep_merge(&mut merged, &own);
        Ok(merged)
    }

    /// Attributes, category and constraints of a class or object, parents resolved.
    fn resolve(
        &mut self,
        is_class: bool,
        name: &str,
        stack: &mut Vec<String>,
    ) -> Result<(Attrs, Option<String>, Option<Value>), String> {
        let doc = if is_class { self.classes.get(name) } else { self.objects.get(name) };
        let doc =
            doc.cloned().ok_or_else(|| format!("unknown {} {name}", if is_class { "class" } else { "object" }))?;
        if stack.iter().any(|s| s == name) {
            return Err(format!("extends cycle through {name}"));
        }
        stack.push(name.to_owned());
        let (mut attrs, mut category, mut constraints) = match doc["extends"].as_str() {
            Some(parent) => self.resolve(is_class, parent, stack)?,
            None => (Attrs::new(), None, None),
        };
        stack.pop();
        let own = self.own_attrs(&doc, &mut Vec::new())?;
        deep_merge(&mut attrs, &own);
        if let Some(c) = doc["category"].as_str() {
            category = Some(c.to_owned());
        }
        if let Some(c) = doc.get("constraints") {
            constraints = Some(c.clone());
        }
        Ok((attrs, category, constraints))
    }

    fn compile(&self, name: &str, attrs: &Attrs, constraints: Option<&Value>) -> Item {
        let mut attributes = BTreeMap::new();
        for (attr_name, def) in attrs {
            let Some(def) = def.as_object() else { continue };
            let mut full = self.dictionary.get(attr_name).and_then(Value::as_object).cloned().unwrap_or_default();
            let known = !full.is_empty();
            deep_merge(&mut full, def);
            let enum_values = full.get("enum").and_then(Value::as_object).map(|e| {
                e.iter().map(|(k, v)| (k.clone(), v["caption"].as_str().unwrap_or_default().to_owned())).collect()
            });
            attributes.insert(
                attr_name.clone(),
                Attr {
                    ty: if known { full.get("type").and_then(Value::as_str).map(str::to_owned) } else { None },
                    is_array: full.get("is_array").and_then(Value::as_bool).unwrap_or(false),
                    requirement: full.get("requirement").and_then(Value::as_str).map(str::to_owned),
                    enum_values,
                    profile: full.get("profile").and_then(Value::as_str).map(str::to_owned),
                },
            );
        }
        let mut list = Vec::new();
        if let Some(Value::Object(c)) = constraints {
            for (kind, keys) in c {
                let keys = keys.as_array().map(|a| a.iter().filter_map(|k| k.as_str().map(str::to_owned)).collect());
                list.push((kind.clone(), keys.unwrap_or_default()));
            }
        }
        Item { name: name.to_owned(), class_uid: None, category_uid: None, attributes, constraints: list }
    }
}

impl Schema {
    /// Loads the schema directory; Err(String) if unreadable.
    pub fn load(dir: &Path) -> Result<Schema, String> {
        let dictionary = read_json(&dir.join("dictionary.json"))?;
        let categories = read_json(&dir.join("categories.json"))?;
        let version = read_json(&dir.join("version.json"))
            .ok()
            .and_then(|v| v["version"].as_str().map(str::to_owned))
            .unwrap_or_default();
        let mut raw = Raw {
            dir: dir.to_owned(),
            classes: by_name(&dir.join("events"))?,
            objects: by_name(&dir.join("objects"))?,
            dictionary: dictionary["attributes"].as_object().cloned().ok_or("dictionary.json: no attributes")?,
            categories: categories["attributes"]
                .as_object()
                .ok_or("categories.json: no attributes")?
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v["uid"].as_i64()?)))
                .collect(),
            includes: HashMap::new(),
        };
        let types = dictionary["types"]["attributes"].as_object().cloned().ok_or("dictionary.json: no types")?;

        let mut profile_files = Vec::new();
        json_files(&dir.join("profiles"), &mut profile_files)?;
        let mut profiles = BTreeSet::new();
        for path in profile_files {
            if let Some(name) = read_json(&path)?["name"].as_str() {
                profiles.insert(name.to_owned());
            }
        }

        let mut objects = HashMap::new();
        let mut object_names: Vec<String> = raw.objects.keys().cloned().collect();
        object_names.sort();
        for name in &object_names {
            let (attrs, _, constraints) = raw.resolve(false, name, &mut Vec::new())?;
            objects.insert(name.clone(), raw.compile(name, &attrs, constraints.as_ref()));
        }

        // observable.type_id's enum is generated from every `observable` number in the schema.
        let mut observable_types = BTreeMap::new();
        for (k, v) in &types {
            if let Some(n) = v["observable"].as_i64() {
                observable_types.insert(n.to_string(), v["caption"].as_str().unwrap_or(k).to_owned());
            }
        }
        for (k, v) in &raw.dictionary {
            if let Some(n) = v["observable"].as_i64() {
                observable_types.insert(n.to_string(), v["caption"].as_str().unwrap_or(k).to_owned());
            }
        }
        for name in &object_names {
            let doc = &raw.objects[name];
            let caption = doc["caption"].as_str().unwrap_or(name);
            if let Some(n) = doc["observable"].as_i64() {
                observable_types.insert(n.to_string(), caption.to_owned());
            }
            for (attr, def) in doc["attributes"].as_object().into_iter().flatten() {
                if let Some(n) = def["observable"].as_i64() {
                    observable_types.insert(n.to_string(), format!("{caption}: {attr}"));
                }
            }
        }
        if let Some(type_id) = objects.get_mut("observable").and_then(|o| o.attributes.get_mut("type_id")) {
            type_id.enum_values.get_or_insert_with(BTreeMap::new).extend(observable_types);
        }

        let mut classes = HashMap::new();
        let mut class_names: Vec<String> = raw.classes.keys().cloned().collect();
        class_names.sort();
        for name in &class_names {
            let uid = raw.classes[name]["uid"].as_i64();
            if uid.is_none() && name != "base_event" {
                continue; // abstract category class
            }
            let (attrs, category, _) = raw.resolve(true, name, &mut Vec::new())?;
            let category = category.ok_or_else(|| format!("class {name}: no category"))?;
            let category_uid = match raw.categories.get(&category) {
                Some(&uid) => uid,
                None if category == "other" => 0,
                None => return Err(format!("class {name}: category {category} not in categories.json")),
            };
            let class_uid = category_uid * 1000 + uid.unwrap_or(0);
            let constraints = raw.classes[name].get("constraints").cloned();
            let mut item = raw.compile(name, &attrs, constraints.as_ref());
            // Generated per class; checked against the class itself below.
            for generated in ["class_uid", "category_uid", "type_uid"] {
                if let Some(a) = item.attributes.get_mut(generated) {
                    a.enum_values = None;
                }
            }
            item.class_uid = Some(class_uid);
            item.category_uid = Some(category_uid);
            if classes.insert(class_uid, item).is_some() {
                return Err(format!("class {name}: duplicate class_uid {class_uid}"));
            }
        }
        Ok(Schema { version, classes, objects, types, profiles })
    }

    /// The schema dir if present, following the skip/require rule; None = skip.
    ///
    /// The schema is `../../../shared/ocsf` from this crate's manifest dir. When it is
    /// absent, prints why and returns None, unless `PIIWATCH_REQUIRE_SHARED=1`, which panics.
    pub fn from_shared() -> Option<Schema> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/ocsf");
        if !dir.is_dir() {
            let required = std::env::var("PIIWATCH_REQUIRE_SHARED").is_ok_and(|v| v == "1");
            assert!(!required, "PIIWATCH_REQUIRE_SHARED=1 but the OCSF schema is missing at {}", dir.display());
            eprintln!("SKIPPED: OCSF schema not found at {} (set PIIWATCH_REQUIRE_SHARED=1 to fail)", dir.display());
            return None;
        }
        match Schema::load(&dir) {
            Ok(schema) => Some(schema),
            Err(e) => panic!("OCSF schema at {} does not load: {e}", dir.display()),
        }
    }

    /// The compiled class with this `class_uid`.
    pub fn class(&self, class_uid: i64) -> Option<&Item> {
        self.classes.get(&class_uid)
    }

    /// The compiled object with this name.
    pub fn object(&self, name: &str) -> Option<&Item> {
        self.objects.get(name)
    }

    /// Validates one event (a JSON object); human-readable errors with JSON paths, empty when valid.
    pub fn validate(&self, event: &Value) -> Vec<String> {
        let mut errors = Vec::new();
        let Some(map) = event.as_object() else {
            return vec![format!("(root): expected a JSON object, got {}", kind(event))];
        };
        let class = match map.get("class_uid") {
            None | Some(Value::Null) => return vec!["class_uid: required attribute is missing".to_owned()],
            Some(v) => match v.as_i64() {
                None => return vec![format!("class_uid: expected integer_t, got {}", kind(v))],
                Some(uid) => match self.classes.get(&uid) {
                    None => return vec![format!("class_uid: no class is defined for {uid}")],
                    Some(c) => c,
                },
            },
        };
        let profiles = self.declared_profiles(map, &mut errors);
        let mut cx = Cx { schema: self, profiles, errors };
        cx.item(class, map, "");

        let int = |k: &str| map.get(k).and_then(Value::as_i64);
        if let (Some(category), Some(expected)) = (int("category_uid"), class.category_uid)
            && category != expected
        {
            cx.errors.push(format!("category_uid: {category} does not match the class's category {expected}"));
        }
        if let (Some(class_uid), Some(activity), Some(type_uid)) =
            (int("class_uid"), int("activity_id"), int("type_uid"))
        {
            let expected = class_uid * 100 + activity;
            if type_uid != expected {
                cx.errors.push(format!(
                    "type_uid: {type_uid} is not class_uid {class_uid} * 100 + activity_id {activity} = {expected}"
                ));
            }
        }
        if let Some(v) = map.get("metadata").and_then(|m| m.get("version")).and_then(Value::as_str) {
            self.check_version(v, &mut cx.errors);
        }
        cx.errors
    }

    /// Errors for `observables[].name` values that do not name an attribute path of the event's
    /// class, as the OCSF server's validator reports them (it walks the dotted name through the
    /// class and its object attributes, honouring `metadata.profiles`).
    pub fn observable_name_errors(&self, event: &Value) -> Vec<String> {
        let mut errors = Vec::new();
        let Some(class) = event.get("class_uid").and_then(Value::as_i64).and_then(|u| self.classes.get(&u)) else {
            return errors;
        };
        let Some(map) = event.as_object() else { return errors };
        let profiles = self.declared_profiles(map, &mut Vec::new());
        let observables = map.get("observables").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        for (i, o) in observables.iter().enumerate() {
            let Some(name) = o.get("name").and_then(Value::as_str) else { continue };
            let mut item = class;
            let mut found = true;
            let parts: Vec<&str> = name.split('.').collect();
            for (depth, part) in parts.iter().enumerate() {
                let attr =
                    item.attributes.get(*part).filter(|a| a.profile.as_ref().is_none_or(|p| profiles.contains(p)));
                let Some(attr) = attr else {
                    found = false;
                    break;
                };
                if depth + 1 < parts.len() {
                    match attr.ty.as_deref().and_then(|t| self.objects.get(t)).filter(|o| !o.attributes.is_empty()) {
                        Some(next) => item = next,
                        None => {
                            found = false;
                            break;
                        }
                    }
                }
            }
            if !found {
                errors.push(format!(
                    "observables[{i}].name: \"{name}\" does not refer to an attribute of {}",
                    class.describe()
                ));
            }
        }
        errors
    }

    /// Captions of `observable.type_id` values, by value.
    pub fn observable_types(&self) -> BTreeMap<i64, String> {
        let values = self.objects.get("observable").and_then(|o| o.attributes.get("type_id"));
        let values = values.and_then(|a| a.enum_values.clone()).unwrap_or_default();
        values.into_iter().filter_map(|(k, v)| Some((k.parse().ok()?, v))).collect()
    }

    /// A readable list of an item's attributes: name, type, requirement, profile and enum.
    pub fn describe(&self, item: &Item) -> String {
        let mut out = format!("{}\n", item.describe());
        for (name, a) in &item.attributes {
            let ty = a.ty.as_deref().unwrap_or("?");
            let array = if a.is_array { "[]" } else { "" };
            let req = a.requirement.as_deref().unwrap_or("-");
            let _ = write!(out, "  {name}: {ty}{array} {req}");
            if let Some(p) = &a.profile {
                let _ = write!(out, " (profile {p})");
            }
            if let Some(e) = &a.enum_values {
                let mut sorted: Vec<(&String, &String)> = e.iter().collect();
                sorted.sort_by_key(|(k, _)| (k.parse::<i64>().ok(), k.as_str()));
                let list: Vec<String> = sorted.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let _ = write!(out, " enum {{{}}}", list.join(", "));
            }
            out.push('\n');
        }
        for (kind, keys) in &item.constraints {
            let _ = writeln!(out, "  constraint {kind}: {keys:?}");
        }
        out
    }

    fn declared_profiles(&self, event: &Attrs, errors: &mut Vec<String>) -> BTreeSet<String> {
        let mut declared = BTreeSet::new();
        let list = event.get("metadata").and_then(|m| m.get("profiles")).and_then(Value::as_array);
        for (i, p) in list.into_iter().flatten().enumerate() {
            if let Some(p) = p.as_str() {
                if !self.profiles.contains(p) {
                    errors.push(format!("metadata.profiles[{i}]: no profile is defined for \"{p}\""));
                }
                declared.insert(p.to_owned());
            }
        }
        declared
    }

    fn check_version(&self, version: &str, errors: &mut Vec<String>) {
        fn parse(v: &str) -> Option<(u64, u64, u64)> {
            let core = v.strip_suffix("-dev").or_else(|| v.split_once("-rc.").map(|(c, _)| c)).unwrap_or(v);
            let mut parts = core.split('.').map(|p| p.parse().ok());
            let triple = (parts.next()??, parts.next()??, parts.next()??);
            parts.next().is_none().then_some(triple)
        }
        match (parse(version), parse(&self.version)) {
            (None, _) => errors.push(format!("metadata.version: \"{version}\" is not x.y.z, x.y.z-dev or x.y.z-rc.N")),
            (Some(v), Some(schema)) if v > schema || v < (1, 0, 0) => {
                errors.push(format!("metadata.version: \"{version}\" is outside 1.0.0 to {}", self.version))
            }
            _ => {}
        }
    }
}

/// One validation run.
struct Cx<'a> {
    schema: &'a Schema,
    profiles: BTreeSet<String>,
    errors: Vec<String>,
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() { key.to_owned() } else { format!("{parent}.{key}") }
}

fn kind(v: &Value) -> String {
    match v {
        Value::Null => "null".to_owned(),
        Value::Bool(_) => "boolean".to_owned(),
        Value::Number(n) if n.is_f64() => format!("float {n}"),
        Value::Number(n) => format!("integer {n}"),
        Value::String(s) => format!("string {s:?}"),
        Value::Array(_) => "array".to_owned(),
        Value::Object(_) => "object".to_owned(),
    }
}

impl Cx<'_> {
    fn item(&mut self, item: &Item, value: &Attrs, path: &str) {
        for (name, attr) in &item.attributes {
            let active = attr.profile.as_ref().is_none_or(|p| self.profiles.contains(p));
            let at = join(path, name);
            match value.get(name).filter(|v| !v.is_null()) {
                None if active && attr.is_required() => {
                    self.errors.push(format!("{at}: required attribute is missing"))
                }
                None => {}
                Some(_) if !active => self.errors.push(format!(
                    "{at}: attribute of profile \"{}\", which metadata.profiles does not declare",
                    attr.profile.as_deref().unwrap_or_default()
                )),
                Some(v) => self.attr(attr, v, &at),
            }
        }
        if !item.attributes.is_empty() {
            for (key, v) in value {
                if self.datetime_sibling(item, key) {
                    // The synthetic datetime profile: `X_dt` (datetime_t) beside each timestamp_t `X`.
                    self.scalar("datetime_t", v, &join(path, key));
                } else if !item.attributes.contains_key(key) {
                    self.errors.push(format!(
                        "{}: unknown attribute; not defined in {}",
                        join(path, key),
                        item.describe()
                    ));
                }
            }
        }
        for (kind, keys) in &item.constraints {
            let present = keys.iter().filter(|k| value.get(*k).is_some_and(|v| !v.is_null())).count();
            let ok = match kind.as_str() {
                "at_least_one" => present >= 1,
                "just_one" => present == 1,
                _ => false,
            };
            if !ok {
                let at = if path.is_empty() { "(root)" } else { path };
                self.errors.push(format!("{at}: constraint {kind} {keys:?} of {} not met", item.describe()));
            }
        }
    }

    fn datetime_sibling(&self, item: &Item, key: &str) -> bool {
        self.profiles.contains("datetime")
            && !item.attributes.contains_key(key)
            && key.strip_suffix("_dt").and_then(|stem| item.attributes.get(stem)).is_some_and(|a| {
                a.ty.as_deref() == Some("timestamp_t") && a.profile.as_ref().is_none_or(|p| self.profiles.contains(p))
            })
    }

    fn attr(&mut self, attr: &Attr, v: &Value, path: &str) {
        if attr.is_array {
            match v.as_array() {
                Some(items) => {
                    for (i, e) in items.iter().enumerate() {
                        self.value(attr, e, &format!("{path}[{i}]"));
                    }
                }
                None => self.errors.push(format!(
                    "{path}: expected an array of {}, got {}",
                    attr.ty.as_deref().unwrap_or("?"),
                    kind(v)
                )),
            }
        } else {
            self.value(attr, v, path);
        }
    }

    fn value(&mut self, attr: &Attr, v: &Value, path: &str) {
        let Some(ty) = attr.ty.as_deref() else {
            self.errors.push(format!("{path}: schema bug: attribute is not in dictionary.json"));
            return;
        };
        let schema = self.schema;
        if schema.types.contains_key(ty) {
            if self.scalar(ty, v, path)
                && let Some(values) = &attr.enum_values
            {
                let key = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                if !values.contains_key(&key) {
                    let allowed: Vec<&str> = values.keys().map(String::as_str).collect();
                    self.errors.push(format!("{path}: enum value {v} is not one of {allowed:?}"));
                }
            }
        } else if let Some(object) = schema.objects.get(ty) {
            match v.as_object() {
                Some(map) => self.item(object, map, path),
                None => self.errors.push(format!("{path}: expected object {ty}, got {}", kind(v))),
            }
        } else {
            self.errors.push(format!("{path}: schema bug: type {ty} is neither a dictionary type nor an object"));
        }
    }

    /// Checks a value against a dictionary type; true when its JSON type is right.
    fn scalar(&mut self, ty: &str, v: &Value, path: &str) -> bool {
        let types = &self.schema.types;
        // The type's own constraints first, then its base type's (as the OCSF server does).
        let mut chain = vec![ty];
        while let Some(base) = chain.last().and_then(|t| types.get(*t)).and_then(|d| d["type"].as_str()) {
            if chain.contains(&base) || chain.len() > 4 {
                break;
            }
            chain.push(base);
        }
        let base = chain.last().copied().unwrap_or(ty);
        let prop =
            |key: &str| chain.iter().find_map(|t| types.get(*t).and_then(|d| d.get(key)).filter(|x| !x.is_null()));
        let type_ok = match base {
            "boolean_t" => v.is_boolean(),
            "integer_t" | "long_t" => v.is_i64(),
            "float_t" => v.is_number(),
            "string_t" => v.is_string(),
            "json_t" => true,
            other => {
                self.errors.push(format!("{path}: schema bug: unknown base type {other}"));
                return false;
            }
        };
        if !type_ok {
            let shown = if base == ty { ty.to_owned() } else { format!("{ty} ({base})") };
            self.errors.push(format!("{path}: expected {shown}, got {}", kind(v)));
            return false;
        }
        if let (Some(n), Some(range)) = (v.as_f64(), prop("range").and_then(Value::as_array))
            && let (Some(lo), Some(hi)) = (range.first().and_then(Value::as_f64), range.get(1).and_then(Value::as_f64))
            && (n < lo || n > hi)
        {
            self.errors.push(format!("{path}: {v} is outside {ty}'s range {lo} to {hi}"));
        }
        if let Some(s) = v.as_str() {
            if let Some(max) = prop("max_len").and_then(Value::as_u64)
                && s.chars().count() as u64 > max
            {
                self.errors.push(format!("{path}: longer than {ty}'s max length {max}"));
            }
            if ty == "ip_t" {
                let addr = s.trim();
                let addr = addr.split_once('%').map_or(addr, |(a, _)| a);
                if addr.parse::<std::net::IpAddr>().is_err() {
                    self.errors.push(format!("{path}: {s:?} is not an IP address"));
                }
            }
        }
        if let Some(values) = prop("values").and_then(Value::as_array)
            && !values.contains(v)
        {
            self.errors.push(format!("{path}: {v} is not one of {ty}'s values"));
        }
        true
    }
}
