// A small JSON Schema checker for the forms and the state editor: types, required,
// properties, additionalProperties, items, enum, const, lengths, bounds, anyOf/oneOf,
// allOf, $ref to #/$defs. The server checks again; this one answers before sending.

function typeOf(value) {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  if (typeof value === "number") return Number.isInteger(value) ? "integer" : "number";
  return typeof value;
}

function fits(type, value) {
  const t = typeOf(value);
  return type === t || (type === "number" && t === "integer");
}

function resolve(schema, root) {
  let s = schema;
  for (let i = 0; s && s.$ref && i < 20; i++) {
    const parts = s.$ref.replace(/^#\//, "").split("/");
    s = parts.reduce((node, part) => node?.[part], root);
  }
  return s || {};
}

/** Every problem of `value` against `schema`, as "path: message" strings. */
export function validate(value, schema, root = schema, path = "") {
  schema = resolve(schema, root);
  const where = path || "(root)";
  const problems = [];
  if (schema === true || !schema || Object.keys(schema).length === 0) return problems;
  const alternatives = schema.anyOf || schema.oneOf;
  if (alternatives) {
    const ok = alternatives.some((alt) => validate(value, alt, root, path).length === 0);
    if (!ok) {
      const types = alternatives.map((a) => resolve(a, root).type).filter(Boolean);
      problems.push(`${where}: should be ${types.length ? types.join(" or ") : "one of the allowed shapes"} (got ${typeOf(value)} ${short(value)})`);
    }
    return problems;
  }
  for (const part of schema.allOf || []) problems.push(...validate(value, part, root, path));
  if (schema.type) {
    const types = Array.isArray(schema.type) ? schema.type : [schema.type];
    if (!types.some((t) => fits(t, value))) {
      problems.push(`${where}: should be ${types.join(" or ")} (got ${typeOf(value)} ${short(value)})`);
      return problems;
    }
  }
  if (schema.enum && !schema.enum.some((e) => JSON.stringify(e) === JSON.stringify(value))) {
    problems.push(`${where}: should be one of ${schema.enum.map((e) => JSON.stringify(e)).join(", ")}`);
  }
  if ("const" in schema && JSON.stringify(schema.const) !== JSON.stringify(value)) problems.push(`${where}: should be ${JSON.stringify(schema.const)}`);
  if (typeof value === "string") {
    if (schema.minLength !== undefined && value.length < schema.minLength) problems.push(`${where}: should have at least ${schema.minLength} characters`);
    if (schema.maxLength !== undefined && value.length > schema.maxLength) problems.push(`${where}: should have at most ${schema.maxLength} characters`);
    if (schema.pattern && !new RegExp(schema.pattern, "u").test(value)) problems.push(`${where}: should match ${schema.pattern}`);
  }
  if (typeof value === "number") {
    if (schema.minimum !== undefined && value < schema.minimum) problems.push(`${where}: should be ≥ ${schema.minimum}`);
    if (schema.maximum !== undefined && value > schema.maximum) problems.push(`${where}: should be ≤ ${schema.maximum}`);
    if (schema.exclusiveMinimum !== undefined && value <= schema.exclusiveMinimum) problems.push(`${where}: should be > ${schema.exclusiveMinimum}`);
    if (schema.exclusiveMaximum !== undefined && value >= schema.exclusiveMaximum) problems.push(`${where}: should be < ${schema.exclusiveMaximum}`);
  }
  if (Array.isArray(value)) {
    if (schema.minItems !== undefined && value.length < schema.minItems) problems.push(`${where}: should have at least ${schema.minItems} items`);
    if (schema.maxItems !== undefined && value.length > schema.maxItems) problems.push(`${where}: should have at most ${schema.maxItems} items`);
    if (schema.items) value.forEach((item, i) => problems.push(...validate(item, schema.items, root, `${path}/${i}`)));
  }
  if (typeOf(value) === "object") {
    for (const name of schema.required || []) {
      if (!(name in value)) problems.push(`${path}/${name}: is required`);
    }
    const props = schema.properties || {};
    for (const [name, item] of Object.entries(value)) {
      if (name in props) problems.push(...validate(item, props[name], root, `${path}/${name}`));
      else if (schema.additionalProperties === false) problems.push(`${path}/${name}: is not a key of this schema`);
      else if (typeof schema.additionalProperties === "object") problems.push(...validate(item, schema.additionalProperties, root, `${path}/${name}`));
    }
  }
  return problems.map((p) => p.replace(/^\//, ""));
}

function short(value) {
  const text = JSON.stringify(value);
  return text === undefined ? "" : text.length > 40 ? text.slice(0, 37) + "…" : text;
}
