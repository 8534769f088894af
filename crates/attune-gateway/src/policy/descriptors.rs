//! The policy table resolved against the contracts: each rule's field paths
//! become field numbers (what the wire walk reads), from
//! `attune_proto::FILE_DESCRIPTOR_SET`. A path that names no field, or an id
//! path that ends anywhere but at a string, is an error at start-up (and in the
//! unit tests), never a silently unchecked field.

use std::collections::HashMap;

use prost::Message as _;
use prost_types::field_descriptor_proto::Type;
use prost_types::{DescriptorProto, FileDescriptorSet, MethodDescriptorProto};

use super::table::{Access, LONG_LIVED, RULES, Rule};
use super::wire::FieldPath;

/// Every message and method of the contracts, by full name.
pub(crate) struct Contracts {
    messages: HashMap<String, DescriptorProto>,
    /// `package.Service/Method` → the method.
    methods: HashMap<String, MethodDescriptorProto>,
}

impl Contracts {
    /// Reads the contracts compiled into `attune_proto`.
    pub(crate) fn load() -> Self {
        let set = FileDescriptorSet::decode(attune_proto::FILE_DESCRIPTOR_SET)
            .expect("attune_proto's descriptor set is well formed");
        let mut messages = HashMap::new();
        let mut methods = HashMap::new();
        for file in set.file {
            let package = file.package().to_owned();
            for message in &file.message_type {
                collect_messages(&format!(".{package}"), message, &mut messages);
            }
            for service in &file.service {
                for method in &service.method {
                    methods.insert(
                        format!("{package}.{}/{}", service.name(), method.name()),
                        method.clone(),
                    );
                }
            }
        }
        Self { messages, methods }
    }

    /// Every method, as `package.Service/Method`.
    #[cfg(test)]
    pub(crate) fn methods(&self) -> impl Iterator<Item = &str> {
        self.methods.keys().map(String::as_str)
    }

    /// The input message of `method` (`package.Service/Method`).
    pub(crate) fn input_of(&self, method: &str) -> Option<&DescriptorProto> {
        let method = self.methods.get(method)?;
        self.messages.get(method.input_type())
    }

    /// The message named `type_name` (`.package.Message`).
    pub(crate) fn message(&self, type_name: &str) -> Option<&DescriptorProto> {
        self.messages.get(type_name)
    }

    /// Whether `method` answers with a stream.
    #[cfg(test)]
    pub(crate) fn server_streaming(&self, method: &str) -> bool {
        self.methods
            .get(method)
            .is_some_and(MethodDescriptorProto::server_streaming)
    }

    /// Whether `method` takes a stream of requests.
    pub(crate) fn client_streaming(&self, method: &str) -> bool {
        self.methods
            .get(method)
            .is_some_and(MethodDescriptorProto::client_streaming)
    }

    /// The field numbers along `path` (`events.customer_id`) from `method`'s
    /// input, and the type of the last field.
    fn resolve(&self, method: &str, path: &str) -> Result<(FieldPath, Type), String> {
        let mut message = self
            .input_of(method)
            .ok_or_else(|| format!("{method} is no method of the contracts"))?;
        let mut numbers = Vec::new();
        let mut names = path.split('.').peekable();
        while let Some(name) = names.next() {
            let field = message
                .field
                .iter()
                .find(|field| field.name() == name)
                .ok_or_else(|| format!("{method}: {path}: no field {name:?}"))?;
            numbers.push(u32::try_from(field.number()).map_err(|_| format!("{path}: bad number"))?);
            if names.peek().is_none() {
                return Ok((FieldPath::new(numbers), field.r#type()));
            }
            if field.r#type() != Type::Message {
                return Err(format!("{method}: {path}: {name} is not a message"));
            }
            message = self
                .message(field.type_name())
                .ok_or_else(|| format!("{method}: {path}: unknown type {}", field.type_name()))?;
        }
        Err(format!("{method}: empty field path"))
    }
}

fn collect_messages(
    scope: &str,
    message: &DescriptorProto,
    out: &mut HashMap<String, DescriptorProto>,
) {
    let name = format!("{scope}.{}", message.name());
    for nested in &message.nested_type {
        collect_messages(&name, nested, out);
    }
    out.insert(name, message.clone());
}

/// A rule ready to apply: its access, and its field paths as field numbers.
#[derive(Debug, Clone)]
pub(crate) struct CompiledRule {
    pub(crate) access: Access,
    /// Where the request names customers (strings).
    pub(crate) ids: Vec<FieldPath>,
    /// Fields a customer principal may not set.
    pub(crate) not_for_customers: Vec<FieldPath>,
    /// The method takes a stream of requests: only the first is read.
    pub(crate) client_streaming: bool,
    /// The method's answer is a long-lived stream ([`LONG_LIVED`]).
    pub(crate) long_lived: bool,
}

/// Every rule by its call path (`/package.Service/Method`).
pub(crate) type CompiledTable = HashMap<String, CompiledRule>;

/// Resolves every rule of the table against the contracts.
pub(crate) fn compile() -> Result<CompiledTable, String> {
    compile_rules(&Contracts::load(), RULES)
}

pub(crate) fn compile_rules(
    contracts: &Contracts,
    rules: &[Rule],
) -> Result<CompiledTable, String> {
    let mut table = HashMap::with_capacity(rules.len());
    for rule in rules {
        let compiled = match rule.access {
            // Health and reflection are described by their own crates'
            // descriptor sets; they carry no ids.
            Access::Open => CompiledRule {
                access: rule.access,
                ids: Vec::new(),
                not_for_customers: Vec::new(),
                client_streaming: false,
                long_lived: LONG_LIVED.contains(&rule.method),
            },
            access => {
                if contracts.input_of(rule.method).is_none() {
                    return Err(format!("{} is no method of the contracts", rule.method));
                }
                let ids = access
                    .ids()
                    .iter()
                    .map(|path| {
                        let (numbers, kind) = contracts.resolve(rule.method, path)?;
                        if kind == Type::String {
                            Ok(numbers)
                        } else {
                            Err(format!("{}: {path} is not a string", rule.method))
                        }
                    })
                    .collect::<Result<Vec<_>, String>>()?;
                let not_for_customers = match access {
                    Access::Customer {
                        not_for_customers, ..
                    } => not_for_customers
                        .iter()
                        .map(|path| contracts.resolve(rule.method, path).map(|(n, _)| n))
                        .collect::<Result<Vec<_>, String>>()?,
                    _ => Vec::new(),
                };
                CompiledRule {
                    access,
                    ids,
                    not_for_customers,
                    client_streaming: contracts.client_streaming(rule.method),
                    long_lived: LONG_LIVED.contains(&rule.method),
                }
            }
        };
        if table
            .insert(format!("/{}", rule.method), compiled)
            .is_some()
        {
            return Err(format!("{} has two rules", rule.method));
        }
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The package whose service each data-holding backend serves internally;
    /// the public port never routes it.
    const INTERNAL: &str = "attune.privacy.v1.";

    /// Whether a field's name says it holds a customer id.
    fn names_a_customer(name: &str) -> bool {
        [
            "customer_id",
            "customer_ids",
            "anonymous_id",
            "anonymous_ids",
            "profile_id",
            "visitor_id",
        ]
        .iter()
        .any(|suffix| name == *suffix || name.ends_with(&format!("_{suffix}")))
    }

    /// Every path to a string field named like a customer id in `message`, at
    /// any depth (a message met again on the way is not entered twice).
    fn customer_paths(
        contracts: &Contracts,
        message: &DescriptorProto,
        prefix: &str,
        entered: &mut Vec<String>,
        out: &mut BTreeSet<String>,
    ) {
        for field in &message.field {
            let path = if prefix.is_empty() {
                field.name().to_owned()
            } else {
                format!("{prefix}.{}", field.name())
            };
            match field.r#type() {
                Type::String if names_a_customer(field.name()) => {
                    out.insert(path);
                }
                Type::Message if !entered.iter().any(|t| t == field.type_name()) => {
                    let nested = contracts.message(field.type_name()).expect("known type");
                    entered.push(field.type_name().to_owned());
                    customer_paths(contracts, nested, &path, entered, out);
                    entered.pop();
                }
                _ => {}
            }
        }
    }

    #[test]
    fn the_table_compiles_against_the_contracts() {
        compile().unwrap();
    }

    #[test]
    fn every_public_method_has_a_rule() {
        let contracts = Contracts::load();
        let ruled: BTreeSet<&str> = RULES.iter().map(|rule| rule.method).collect();
        let missing: Vec<&str> = contracts
            .methods()
            .filter(|method| !method.starts_with(INTERNAL) && !ruled.contains(method))
            .collect();
        assert!(missing.is_empty(), "methods without a rule: {missing:#?}");
    }

    #[test]
    fn every_rule_names_a_public_method() {
        let contracts = Contracts::load();
        let methods: BTreeSet<&str> = contracts.methods().collect();
        for rule in RULES {
            if rule.access == Access::Open {
                assert!(rule.method.starts_with("grpc."), "{}", rule.method);
                continue;
            }
            assert!(
                methods.contains(rule.method),
                "{} is no method",
                rule.method
            );
            assert!(
                !rule.method.starts_with(INTERNAL),
                "{} is internal",
                rule.method
            );
        }
    }

    #[test]
    fn every_field_naming_a_customer_is_declared() {
        let contracts = Contracts::load();
        for rule in RULES.iter().filter(|rule| rule.access != Access::Open) {
            let input = contracts.input_of(rule.method).expect("the method exists");
            let mut found = BTreeSet::new();
            customer_paths(&contracts, input, "", &mut Vec::new(), &mut found);
            let declared: BTreeSet<String> = rule
                .access
                .ids()
                .iter()
                .map(|path| (*path).to_owned())
                .collect();
            assert_eq!(
                declared, found,
                "{}: the declared ids differ from the fields naming customers",
                rule.method
            );
        }
    }

    #[test]
    fn every_stream_is_long_lived_or_bounded_and_every_listed_one_is_ruled() {
        use super::super::table::BOUNDED_STREAMS;
        let contracts = Contracts::load();
        let ruled: BTreeSet<&str> = RULES.iter().map(|rule| rule.method).collect();
        for method in LONG_LIVED.iter().chain(BOUNDED_STREAMS) {
            assert!(ruled.contains(method), "{method} has no rule");
        }
        let unclassified: Vec<&str> = contracts
            .methods()
            .filter(|method| !method.starts_with(INTERNAL))
            .filter(|method| contracts.server_streaming(method))
            .filter(|method| !LONG_LIVED.contains(method) && !BOUNDED_STREAMS.contains(method))
            .collect();
        assert!(
            unclassified.is_empty(),
            "streams neither long-lived nor bounded: {unclassified:#?}"
        );
    }

    #[test]
    fn a_method_without_a_rule_or_a_wrong_path_does_not_compile() {
        let contracts = Contracts::load();
        let unknown = [Rule {
            method: "attune.consent.v1.ConsentService/NoSuchMethod",
            access: Access::Catalogue {
                scopes: &["consent.read"],
            },
        }];
        assert!(compile_rules(&contracts, &unknown).is_err());
        let wrong_path = [Rule {
            method: "attune.consent.v1.ConsentService/CheckConsent",
            access: Access::Operator {
                scopes: &["admin"],
                ids: &["customer"],
            },
        }];
        assert!(compile_rules(&contracts, &wrong_path).is_err());
    }
}
