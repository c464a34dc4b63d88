//! The schemas this server speaks (RFC 7643 §4, §8.7) as static data, and the discovery documents
//! (`/Schemas`, `/ResourceTypes`, `/ServiceProviderConfig`) generated from them, so the documents
//! and the validator can never disagree.

use serde::Serialize;
use serde_json::{json, Map, Value};

pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE_USER_SCHEMA: &str =
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const SYNC_USER_SCHEMA: &str = "urn:idbridge:params:scim:schemas:extension:sync:2.0:User";
pub const SYNC_GROUP_SCHEMA: &str = "urn:idbridge:params:scim:schemas:extension:sync:2.0:Group";
/// RFC 7643 defines no contact; this server's own core schema for one (like a directory's
/// mail contact: an address book entry that cannot sign in).
pub const CONTACT_SCHEMA: &str = "urn:idbridge:params:scim:schemas:core:2.0:Contact";
pub const SYNC_CONTACT_SCHEMA: &str = "urn:idbridge:params:scim:schemas:extension:sync:2.0:Contact";
pub const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const BULK_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
pub const BULK_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:BulkResponse";
pub const SEARCH_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
pub const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
const SCHEMA_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";
const RESOURCE_TYPE_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
const SERVICE_PROVIDER_CONFIG_SCHEMA: &str =
    "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";

/// RFC 7643 §2.3 data types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum AttrType {
    String,
    Boolean,
    Decimal,
    Integer,
    DateTime,
    Binary,
    Reference,
    Complex,
}

/// RFC 7643 §7 `mutability`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Mutability {
    ReadOnly,
    ReadWrite,
    Immutable,
    WriteOnly,
}

/// RFC 7643 §7 `returned`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Returned {
    Always,
    Never,
    Default,
    Request,
}

/// RFC 7643 §7 `uniqueness`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Uniqueness {
    None,
    Server,
    Global,
}

/// One attribute definition (RFC 7643 §7). `closed` is not a SCIM characteristic: it makes the
/// validator reject values outside `canonical_values` (SCIM's own canonical values are advisory).
#[derive(Debug, PartialEq, Eq)]
pub struct AttributeDef {
    pub name: &'static str,
    pub type_: AttrType,
    pub multi_valued: bool,
    pub required: bool,
    pub case_exact: bool,
    pub mutability: Mutability,
    pub returned: Returned,
    pub uniqueness: Uniqueness,
    pub sub_attributes: &'static [AttributeDef],
    pub canonical_values: &'static [&'static str],
    pub reference_types: &'static [&'static str],
    pub closed: bool,
    pub description: &'static str,
}

impl AttributeDef {
    /// A single-valued, optional, case-insensitive, readWrite attribute returned by default.
    const fn new(name: &'static str, type_: AttrType, description: &'static str) -> Self {
        Self {
            name,
            type_,
            multi_valued: false,
            required: false,
            case_exact: false,
            mutability: Mutability::ReadWrite,
            returned: Returned::Default,
            uniqueness: Uniqueness::None,
            sub_attributes: &[],
            canonical_values: &[],
            reference_types: &[],
            closed: false,
            description,
        }
    }
    const fn string(name: &'static str, description: &'static str) -> Self {
        Self::new(name, AttrType::String, description)
    }
    const fn complex(
        name: &'static str,
        subs: &'static [AttributeDef],
        description: &'static str,
    ) -> Self {
        let mut d = Self::new(name, AttrType::Complex, description);
        d.sub_attributes = subs;
        d
    }
    const fn reference(
        name: &'static str,
        types: &'static [&'static str],
        description: &'static str,
    ) -> Self {
        let mut d = Self::new(name, AttrType::Reference, description);
        d.reference_types = types;
        d.case_exact = true;
        d
    }
    const fn multi(mut self) -> Self {
        self.multi_valued = true;
        self
    }
    const fn required(mut self) -> Self {
        self.required = true;
        self
    }
    const fn case_exact(mut self) -> Self {
        self.case_exact = true;
        self
    }
    const fn mutability(mut self, m: Mutability) -> Self {
        self.mutability = m;
        self
    }
    const fn returned(mut self, r: Returned) -> Self {
        self.returned = r;
        self
    }
    const fn unique(mut self) -> Self {
        self.uniqueness = Uniqueness::Server;
        self
    }
    const fn canonical(mut self, values: &'static [&'static str]) -> Self {
        self.canonical_values = values;
        self
    }
    const fn closed(mut self, values: &'static [&'static str]) -> Self {
        self.canonical_values = values;
        self.closed = true;
        self
    }

    /// A sub-attribute by name, case-insensitively (RFC 7643 §2.1).
    pub fn sub_attribute(&self, name: &str) -> Option<&'static AttributeDef> {
        find_def(self.sub_attributes, name)
    }

    /// The JSON of this definition inside a `/Schemas` resource (RFC 7643 §7).
    fn to_json(&self) -> Value {
        let mut o = Map::new();
        o.insert("name".into(), json!(self.name));
        o.insert("type".into(), json!(self.type_));
        o.insert("multiValued".into(), json!(self.multi_valued));
        o.insert("description".into(), json!(self.description));
        o.insert("required".into(), json!(self.required));
        if self.type_ != AttrType::Complex {
            o.insert("caseExact".into(), json!(self.case_exact));
        }
        o.insert("mutability".into(), json!(self.mutability));
        o.insert("returned".into(), json!(self.returned));
        o.insert("uniqueness".into(), json!(self.uniqueness));
        if !self.sub_attributes.is_empty() {
            let subs: Vec<Value> = self.sub_attributes.iter().map(Self::to_json).collect();
            o.insert("subAttributes".into(), Value::Array(subs));
        }
        if !self.canonical_values.is_empty() {
            o.insert("canonicalValues".into(), json!(self.canonical_values));
        }
        if !self.reference_types.is_empty() {
            o.insert("referenceTypes".into(), json!(self.reference_types));
        }
        Value::Object(o)
    }
}

/// A schema (core or extension): a URN and its attributes.
#[derive(Debug, PartialEq, Eq)]
pub struct Schema {
    pub id: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    pub attributes: &'static [AttributeDef],
}

impl Schema {
    pub fn attribute(&self, name: &str) -> Option<&'static AttributeDef> {
        find_def(self.attributes, name)
    }

    fn to_json(&self) -> Value {
        json!({
            "schemas": [SCHEMA_SCHEMA],
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "attributes": self.attributes.iter().map(AttributeDef::to_json).collect::<Vec<_>>(),
            "meta": {"resourceType": "Schema"},
        })
    }
}

fn find_def(defs: &'static [AttributeDef], name: &str) -> Option<&'static AttributeDef> {
    defs.iter().find(|d| d.name.eq_ignore_ascii_case(name))
}

use AttrType::{Binary, Boolean, DateTime};
use Mutability::{Immutable, ReadOnly, WriteOnly};

/// `value`/`display`/`type`/`primary`: the sub-attributes shared by most multi-valued attributes.
macro_rules! multi_valued_subs {
    ($value:expr, [$($types:expr),*]) => {
        &[
            $value,
            AttributeDef::string("display", "A human-readable name, primarily used for display purposes."),
            AttributeDef::string("type", "A label indicating the attribute's function.").canonical(&[$($types),*]),
            AttributeDef::new("primary", Boolean, "Whether this is the primary value of the attribute."),
        ]
    };
}

/// Attributes every resource has (RFC 7643 §3.1): served by the server, except `externalId`.
static COMMON_ATTRIBUTES: [AttributeDef; 3] = [
    AttributeDef::string(
        "id",
        "Unique identifier of the resource, assigned by the service provider.",
    )
    .case_exact()
    .mutability(ReadOnly)
    .returned(Returned::Always)
    .unique(),
    AttributeDef::string(
        "externalId",
        "Identifier of the resource as defined by the provisioning client.",
    )
    .case_exact(),
    AttributeDef::complex(
        "meta",
        &[
            AttributeDef::string("resourceType", "The name of the resource type.")
                .case_exact()
                .mutability(ReadOnly),
            AttributeDef::new("created", DateTime, "When the resource was added.")
                .mutability(ReadOnly),
            AttributeDef::new(
                "lastModified",
                DateTime,
                "When the resource was last modified.",
            )
            .mutability(ReadOnly),
            AttributeDef::reference("location", &["uri"], "The URI of the resource.")
                .mutability(ReadOnly),
            AttributeDef::string("version", "The version (ETag) of the resource.")
                .case_exact()
                .mutability(ReadOnly),
        ],
        "Resource metadata, maintained by the service provider.",
    )
    .mutability(ReadOnly),
];

// Attributes users and contacts share.
const NAME: AttributeDef = AttributeDef::complex(
    "name",
    &[
        AttributeDef::string("formatted", "The full name, formatted for display."),
        AttributeDef::string("familyName", "The family name."),
        AttributeDef::string("givenName", "The given name."),
        AttributeDef::string("middleName", "The middle name(s)."),
        AttributeDef::string("honorificPrefix", "The honorific prefix(es), e.g. 'Ms.'."),
        AttributeDef::string("honorificSuffix", "The honorific suffix(es), e.g. 'III'."),
    ],
    "The components of the person's real name.",
);
const EMAILS: AttributeDef = AttributeDef::complex(
    "emails",
    multi_valued_subs!(
        AttributeDef::string("value", "An email address."),
        ["work", "home", "other"]
    ),
    "Email addresses.",
)
.multi();
const PHONE_NUMBERS: AttributeDef = AttributeDef::complex(
    "phoneNumbers",
    multi_valued_subs!(
        AttributeDef::string("value", "A phone number."),
        ["work", "home", "mobile", "fax", "pager", "other"]
    ),
    "Phone numbers.",
)
.multi();

static USER_ATTRIBUTES: [AttributeDef; 21] = [
    AttributeDef::string(
        "userName",
        "Unique identifier for the User, used to sign in.",
    )
    .required()
    .unique(),
    NAME,
    AttributeDef::string("displayName", "The name of the User, suitable for display."),
    AttributeDef::string("nickName", "The casual way to address the user."),
    AttributeDef::reference(
        "profileUrl",
        &["external"],
        "A URI of the User's online profile.",
    ),
    AttributeDef::string("title", "The user's title, such as 'Vice President'."),
    AttributeDef::string(
        "userType",
        "The relationship between the organization and the user.",
    ),
    AttributeDef::string(
        "preferredLanguage",
        "The User's preferred written or spoken language.",
    ),
    AttributeDef::string("locale", "The User's default location for localisation."),
    AttributeDef::string("timezone", "The User's time zone in IANA format."),
    AttributeDef::new("active", Boolean, "The User's administrative status."),
    AttributeDef::string("password", "The User's cleartext password; never returned.")
        .case_exact()
        .mutability(WriteOnly)
        .returned(Returned::Never),
    EMAILS,
    PHONE_NUMBERS,
    AttributeDef::complex(
        "ims",
        multi_valued_subs!(
            AttributeDef::string("value", "An instant messaging address."),
            ["aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo"]
        ),
        "Instant messaging addresses for the User.",
    )
    .multi(),
    AttributeDef::complex(
        "photos",
        multi_valued_subs!(
            AttributeDef::reference("value", &["external"], "The URL of a photo."),
            ["photo", "thumbnail"]
        ),
        "URLs of photos of the User.",
    )
    .multi(),
    AttributeDef::complex(
        "addresses",
        &[
            AttributeDef::string("formatted", "The full mailing address."),
            AttributeDef::string("streetAddress", "The full street address component."),
            AttributeDef::string("locality", "The city or locality component."),
            AttributeDef::string("region", "The state or region component."),
            AttributeDef::string("postalCode", "The zip code or postal code component."),
            AttributeDef::string("country", "The country name component."),
            AttributeDef::string("type", "A label indicating the address's function.")
                .canonical(&["work", "home", "other"]),
            AttributeDef::new("primary", Boolean, "Whether this is the primary address."),
        ],
        "A physical mailing address for this User.",
    )
    .multi(),
    AttributeDef::complex(
        "groups",
        &[
            AttributeDef::string("value", "The id of the Group.").mutability(ReadOnly),
            AttributeDef::reference("$ref", &["Group"], "The URI of the Group.")
                .mutability(ReadOnly),
            AttributeDef::string("display", "The Group's display name.").mutability(ReadOnly),
            AttributeDef::string("type", "Direct or indirect membership.")
                .canonical(&["direct", "indirect"])
                .mutability(ReadOnly),
        ],
        "The Groups the User belongs to; maintained by the service provider.",
    )
    .multi()
    .mutability(ReadOnly),
    AttributeDef::complex(
        "entitlements",
        multi_valued_subs!(
            AttributeDef::string("value", "The value of an entitlement."),
            []
        ),
        "Entitlements for the User.",
    )
    .multi(),
    AttributeDef::complex(
        "roles",
        multi_valued_subs!(AttributeDef::string("value", "The value of a role."), []),
        "Roles for the User.",
    )
    .multi(),
    AttributeDef::complex(
        "x509Certificates",
        multi_valued_subs!(
            AttributeDef::new("value", Binary, "The value of an X.509 certificate."),
            []
        ),
        "X.509 certificates issued to the User.",
    )
    .multi(),
];

static GROUP_ATTRIBUTES: [AttributeDef; 2] = [
    AttributeDef::string("displayName", "A human-readable name for the Group.").required(),
    AttributeDef::complex(
        "members",
        &[
            AttributeDef::string("value", "The id of the member.")
                .case_exact()
                .mutability(Immutable),
            AttributeDef::reference(
                "$ref",
                &["User", "Group", "Contact"],
                "The URI of the member.",
            )
            .mutability(Immutable),
            AttributeDef::string("display", "The member's display name.").mutability(ReadOnly),
            AttributeDef::string("type", "The member's resource type.")
                .canonical(&["User", "Group", "Contact"])
                .mutability(Immutable),
        ],
        "The members of the Group.",
    )
    .multi(),
];

static CONTACT_ATTRIBUTES: [AttributeDef; 7] = [
    AttributeDef::string(
        "displayName",
        "The name of the Contact, suitable for display.",
    )
    .required(),
    NAME,
    EMAILS,
    PHONE_NUMBERS,
    AttributeDef::string("title", "The contact's job title."),
    AttributeDef::string("department", "The contact's department."),
    AttributeDef::string("companyName", "The contact's company."),
];

static ENTERPRISE_USER_ATTRIBUTES: [AttributeDef; 6] = [
    AttributeDef::string(
        "employeeNumber",
        "Numeric or alphanumeric identifier assigned to a person.",
    ),
    AttributeDef::string("costCenter", "Identifies the name of a cost center."),
    AttributeDef::string("organization", "Identifies the name of an organization."),
    AttributeDef::string("division", "Identifies the name of a division."),
    AttributeDef::string("department", "Identifies the name of a department."),
    AttributeDef::complex(
        "manager",
        &[
            AttributeDef::string("value", "The id of the manager's User.").case_exact(),
            AttributeDef::reference("$ref", &["User"], "The URI of the manager's User."),
            AttributeDef::string("displayName", "The manager's display name.").mutability(ReadOnly),
        ],
        "The User's manager.",
    ),
];

/// Attributes the sync agent maintains on synchronised objects of every kind.
macro_rules! sync_attributes {
    ($($extra:expr),*) => {
        [
            AttributeDef::string("source", "Where the object is mastered.")
                .case_exact()
                .closed(&["cloud", "on_premises"]),
            AttributeDef::string("immutableId", "The source anchor linking the object to its on-premises object.")
                .case_exact()
                .unique(),
            AttributeDef::string("onPremisesDistinguishedName", "The object's distinguished name on premises."),
            AttributeDef::string("onPremisesSamAccountName", "The object's sAMAccountName on premises."),
            AttributeDef::new("lastSyncedAt", DateTime, "When the sync agent last wrote the object."),
            $($extra),*
        ]
    };
}

const PROXY_ADDRESSES: AttributeDef = AttributeDef::string(
    "proxyAddresses",
    "The on-premises proxyAddresses (smtp:, SMTP:, ...).",
)
.multi();

static SYNC_USER_ATTRIBUTES: [AttributeDef; 7] = sync_attributes!(
    AttributeDef::string(
        "licenses",
        "License SKUs assigned to the User; maintained by the service provider."
    )
    .multi()
    .case_exact()
    .mutability(ReadOnly),
    PROXY_ADDRESSES
);

static SYNC_CONTACT_ATTRIBUTES: [AttributeDef; 6] = sync_attributes!(PROXY_ADDRESSES);

static SYNC_GROUP_ATTRIBUTES: [AttributeDef; 7] = sync_attributes!(
    AttributeDef::string("description", "The on-premises group's description."),
    AttributeDef::string("mail", "The on-premises group's mail address.")
);

static COMMON: Schema = Schema {
    id: "",
    name: "Common",
    description: "Attributes common to all resources (RFC 7643 §3.1).",
    attributes: &COMMON_ATTRIBUTES,
};
static USER: Schema = Schema {
    id: USER_SCHEMA,
    name: "User",
    description: "User Account",
    attributes: &USER_ATTRIBUTES,
};
static GROUP: Schema = Schema {
    id: GROUP_SCHEMA,
    name: "Group",
    description: "Group",
    attributes: &GROUP_ATTRIBUTES,
};
static ENTERPRISE_USER: Schema = Schema {
    id: ENTERPRISE_USER_SCHEMA,
    name: "EnterpriseUser",
    description: "Enterprise User",
    attributes: &ENTERPRISE_USER_ATTRIBUTES,
};
static SYNC_USER: Schema = Schema {
    id: SYNC_USER_SCHEMA,
    name: "SyncUser",
    description: "idbridge hybrid-identity sync attributes of a User",
    attributes: &SYNC_USER_ATTRIBUTES,
};
static SYNC_GROUP: Schema = Schema {
    id: SYNC_GROUP_SCHEMA,
    name: "SyncGroup",
    description: "idbridge hybrid-identity sync attributes of a Group",
    attributes: &SYNC_GROUP_ATTRIBUTES,
};
static CONTACT: Schema = Schema {
    id: CONTACT_SCHEMA,
    name: "Contact",
    description: "Contact: an address book entry (a name and addresses) that cannot sign in",
    attributes: &CONTACT_ATTRIBUTES,
};
static SYNC_CONTACT: Schema = Schema {
    id: SYNC_CONTACT_SCHEMA,
    name: "SyncContact",
    description: "idbridge hybrid-identity sync attributes of a Contact",
    attributes: &SYNC_CONTACT_ATTRIBUTES,
};
static USER_EXTENSIONS: [&Schema; 2] = [&ENTERPRISE_USER, &SYNC_USER];
static GROUP_EXTENSIONS: [&Schema; 1] = [&SYNC_GROUP];
static CONTACT_EXTENSIONS: [&Schema; 1] = [&SYNC_CONTACT];

/// The resource types this server serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    User,
    Group,
    Contact,
}

impl ResourceKind {
    pub const ALL: [ResourceKind; 3] = [
        ResourceKind::User,
        ResourceKind::Group,
        ResourceKind::Contact,
    ];

    /// The resource type name (`meta.resourceType`).
    pub fn name(self) -> &'static str {
        self.core_schema().name
    }

    /// The endpoint, relative to the SCIM base URL.
    pub fn endpoint(self) -> &'static str {
        match self {
            Self::User => "/Users",
            Self::Group => "/Groups",
            Self::Contact => "/Contacts",
        }
    }

    pub fn core_schema(self) -> &'static Schema {
        match self {
            Self::User => &USER,
            Self::Group => &GROUP,
            Self::Contact => &CONTACT,
        }
    }

    pub fn extensions(self) -> &'static [&'static Schema] {
        match self {
            Self::User => &USER_EXTENSIONS,
            Self::Group => &GROUP_EXTENSIONS,
            Self::Contact => &CONTACT_EXTENSIONS,
        }
    }

    /// The extension schema with this URN (case-insensitive).
    pub fn extension(self, urn: &str) -> Option<&'static Schema> {
        self.extensions()
            .iter()
            .copied()
            .find(|s| s.id.eq_ignore_ascii_case(urn))
    }

    /// A core or common attribute (`id`, `externalId`, `meta`), by name.
    pub fn core_attribute(self, name: &str) -> Option<&'static AttributeDef> {
        self.core_schema()
            .attribute(name)
            .or_else(|| COMMON.attribute(name))
    }

    /// Guesses the kind of a stored resource from `schemas` or `meta.resourceType`.
    pub fn of_resource(resource: &Value) -> Option<ResourceKind> {
        let has_schema = |kind: ResourceKind| {
            resource
                .get("schemas")
                .and_then(Value::as_array)
                .is_some_and(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .any(|s| s.eq_ignore_ascii_case(kind.core_schema().id))
                })
        };
        let by_meta = |kind: ResourceKind| {
            resource
                .pointer("/meta/resourceType")
                .and_then(Value::as_str)
                .is_some_and(|t| t.eq_ignore_ascii_case(kind.name()))
        };
        Self::ALL
            .into_iter()
            .find(|k| has_schema(*k))
            .or_else(|| Self::ALL.into_iter().find(|k| by_meta(*k)))
    }
}

/// The `/Schemas` resources.
pub fn schemas_json() -> Vec<Value> {
    [
        &USER,
        &ENTERPRISE_USER,
        &SYNC_USER,
        &GROUP,
        &SYNC_GROUP,
        &CONTACT,
        &SYNC_CONTACT,
    ]
    .into_iter()
    .map(Schema::to_json)
    .collect()
}

/// The `/ResourceTypes` resources; `base_url` is the SCIM base (without trailing slash).
pub fn resource_types_json(base_url: &str) -> Vec<Value> {
    let base = base_url.trim_end_matches('/');
    ResourceKind::ALL
        .into_iter()
        .map(|kind| {
            let core = kind.core_schema();
            let extensions: Vec<Value> = kind
                .extensions()
                .iter()
                .map(|s| json!({"schema": s.id, "required": false}))
                .collect();
            json!({
                "schemas": [RESOURCE_TYPE_SCHEMA],
                "id": core.name,
                "name": core.name,
                "endpoint": kind.endpoint(),
                "description": core.description,
                "schema": core.id,
                "schemaExtensions": extensions,
                "meta": {
                    "resourceType": "ResourceType",
                    "location": format!("{base}/ResourceTypes/{}", core.name),
                },
            })
        })
        .collect()
}

/// `/ServiceProviderConfig` (RFC 7643 §5): everything this crate implements is advertised.
pub fn service_provider_config_json(
    max_bulk_operations: usize,
    max_bulk_payload: usize,
    max_filter_results: usize,
) -> Value {
    json!({
        "schemas": [SERVICE_PROVIDER_CONFIG_SCHEMA],
        "patch": {"supported": true},
        "bulk": {
            "supported": true,
            "maxOperations": max_bulk_operations,
            "maxPayloadSize": max_bulk_payload,
        },
        "filter": {"supported": true, "maxResults": max_filter_results},
        "changePassword": {"supported": true},
        "sort": {"supported": true},
        "etag": {"supported": true},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "OAuth Bearer Token",
            "description": "Authentication with an OAuth 2.0 bearer token (RFC 6750).",
            "specUri": "https://www.rfc-editor.org/info/rfc6750",
            "primary": true,
        }],
        "meta": {"resourceType": "ServiceProviderConfig"},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_document_password_as_write_only_never_returned() {
        let schemas = schemas_json();
        assert_eq!(schemas.len(), 7);
        let user = schemas
            .iter()
            .find(|s| s.get("id") == Some(&json!(USER_SCHEMA)))
            .cloned()
            .unwrap_or_default();
        let password = user
            .get("attributes")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().find(|x| x.get("name") == Some(&json!("password"))))
            .cloned()
            .unwrap_or_default();
        assert_eq!(password.get("mutability"), Some(&json!("writeOnly")));
        assert_eq!(password.get("returned"), Some(&json!("never")));
    }

    #[test]
    fn sync_extension_lists_canonical_sources_and_read_only_licenses() {
        let sync = SYNC_USER.to_json();
        let attrs = sync
            .get("attributes")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let find = |n: &str| {
            attrs
                .iter()
                .find(|a| a.get("name") == Some(&json!(n)))
                .cloned()
        };
        assert_eq!(
            find("source").and_then(|s| s.get("canonicalValues").cloned()),
            Some(json!(["cloud", "on_premises"]))
        );
        assert_eq!(
            find("licenses").and_then(|s| s.get("mutability").cloned()),
            Some(json!("readOnly"))
        );
        assert_eq!(
            find("lastSyncedAt").and_then(|s| s.get("type").cloned()),
            Some(json!("dateTime"))
        );
    }

    #[test]
    fn resource_types_point_at_base_url_and_extensions() {
        let rts = resource_types_json("https://idp.example/scim/v2/");
        assert_eq!(rts.len(), 3);
        let contact = rts.get(2).cloned().unwrap_or_default();
        assert_eq!(contact.get("endpoint"), Some(&json!("/Contacts")));
        assert_eq!(contact.get("schema"), Some(&json!(CONTACT_SCHEMA)));
        let user = rts.first().cloned().unwrap_or_default();
        assert_eq!(
            user.pointer("/meta/location"),
            Some(&json!("https://idp.example/scim/v2/ResourceTypes/User"))
        );
        assert_eq!(
            user.pointer("/schemaExtensions/1/schema"),
            Some(&json!(SYNC_USER_SCHEMA))
        );
    }

    #[test]
    fn service_provider_config_advertises_limits() {
        let c = service_provider_config_json(100, 1_048_576, 200);
        assert_eq!(c.pointer("/bulk/maxOperations"), Some(&json!(100)));
        assert_eq!(c.pointer("/filter/maxResults"), Some(&json!(200)));
        assert_eq!(c.pointer("/etag/supported"), Some(&json!(true)));
        assert_eq!(
            c.pointer("/authenticationSchemes/0/type"),
            Some(&json!("oauthbearertoken"))
        );
    }

    #[test]
    fn kind_is_recognised_from_schemas_or_meta() {
        assert_eq!(
            ResourceKind::of_resource(&json!({"schemas": [GROUP_SCHEMA]})),
            Some(ResourceKind::Group)
        );
        assert_eq!(
            ResourceKind::of_resource(&json!({"meta": {"resourceType": "User"}})),
            Some(ResourceKind::User)
        );
        assert_eq!(ResourceKind::of_resource(&json!({})), None);
    }
}
