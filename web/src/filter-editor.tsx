import { FIELDS, OP_LABELS, defaultValue, isCondition, newCondition, opsFor, type Condition, type FilterNode, type Grain, type PeriodValue, type Scalar } from "./fields";
import { label } from "./ui";

export interface FieldError {
  path: string;
  message: string;
}
interface Ctx {
  errors: FieldError[];
  facts: string[];
  fact: string;
  grain: Grain;
}

/** Errors that belong to the node at `path` itself (not to its children). */
export function errorsAt(errors: FieldError[], path: string, isLeaf: boolean) {
  return errors.filter((e) => e.path === path || (isLeaf && (e.path.startsWith(`${path}.`) || e.path.startsWith(`${path}[`))));
}

/** Every node path the editor shows, to find errors that no node shows. */
export function nodePaths(node: FilterNode, path = "filter"): Array<{ path: string; leaf: boolean }> {
  if ("not" in node) return [{ path, leaf: false }, ...nodePaths(node.not, `${path}.not`)];
  if ("all" in node || "any" in node) {
    const key = "all" in node ? "all" : "any";
    const kids = (node as Record<string, FilterNode[]>)[key]!;
    return [{ path, leaf: false }, { path: `${path}.${key}`, leaf: false }, ...kids.flatMap((k, i) => nodePaths(k, `${path}.${key}[${i}]`))];
  }
  return [{ path, leaf: true }];
}

function FieldErrors({ errors, id }: { errors: FieldError[]; id: string }) {
  if (!errors.length) return null;
  return (
    <ul class="field-errors" id={id} role="alert">
      {errors.map((e) => (
        <li key={e.path + e.message}>
          <code>{e.path}</code>: {e.message}
        </li>
      ))}
    </ul>
  );
}

/** A group (all / any) with its children; the root of the filter is always a group. */
export function GroupEditor(props: { node: { all: FilterNode[] } | { any: FilterNode[] }; path: string; name: string; prefix: string; ctx: Ctx; depth: number; onChange(n: FilterNode): void; onRemove?: () => void; negated?: boolean; onNegate?: (v: boolean) => void }) {
  const { node, path, ctx, name } = props;
  const mode = "all" in node ? "all" : "any";
  const kids = "all" in node ? node.all : node.any;
  const set = (k: FilterNode[], m: "all" | "any" = mode) => props.onChange(m === "all" ? { all: k } : { any: k });
  const groupErrors = [...errorsAt(ctx.errors, path, false), ...errorsAt(ctx.errors, `${path}.${mode}`, false)];
  const errId = `err-${path.replace(/[^a-z0-9]/gi, "-")}`;
  return (
    <fieldset class={`group depth-${props.depth}`} aria-describedby={groupErrors.length ? errId : undefined}>
      <legend>
        <label>
          <span class="sr-only">Combine the conditions of {name}</span>
          Match{" "}
          <select aria-label={`Combine ${name}`} value={mode} onChange={(e) => set(kids, e.currentTarget.value as "all" | "any")}>
            <option value="all">all of</option>
            <option value="any">any of</option>
          </select>
        </label>
        {props.onNegate && <NegateToggle name={name} negated={!!props.negated} onNegate={props.onNegate} />}
        {props.onRemove && (
          <button type="button" class="icon" aria-label={`Remove ${name}`} onClick={props.onRemove}>
            ✕
          </button>
        )}
      </legend>
      <FieldErrors errors={groupErrors} id={errId} />
      {/* The API refuses an empty group (filter.all / filter.any must be a non-empty array of nodes). */}
      {kids.length === 0 && <p class="warn-text small">No conditions: a group needs at least one condition. Add one{props.onRemove ? ", or remove this group" : ""}.</p>}
      <ol class="children">
        {kids.map((child, i) => {
          const num = `${props.prefix}${i + 1}`;
          return (
            <li key={i}>
              <NodeEditor
                node={child}
                path={`${path}.${mode}[${i}]`}
                num={num}
                ctx={ctx}
                depth={props.depth + 1}
                onChange={(n) => set(kids.map((k, j) => (j === i ? n : k)))}
                onRemove={() => set(kids.filter((_, j) => j !== i))}
              />
            </li>
          );
        })}
      </ol>
      <div class="row">
        <button type="button" onClick={() => set([...kids, newCondition()])} aria-label={`Add a condition to ${name}`}>
          + Condition
        </button>
        {props.depth < 4 && (
          <button type="button" onClick={() => set([...kids, { any: [newCondition()] }])} aria-label={`Add a group to ${name}`}>
            + Group
          </button>
        )}
      </div>
    </fieldset>
  );
}

function NegateToggle({ name, negated, onNegate }: { name: string; negated: boolean; onNegate(v: boolean): void }) {
  return (
    <label class="negate">
      <input type="checkbox" checked={negated} onChange={(e) => onNegate(e.currentTarget.checked)} aria-label={`Exclude ${name} (NOT)`} /> NOT
    </label>
  );
}

function NodeEditor(props: { node: FilterNode; path: string; num: string; ctx: Ctx; depth: number; onChange(n: FilterNode): void; onRemove(): void }) {
  const { node } = props;
  const negated = "not" in node;
  const inner = negated ? node.not : node;
  const innerPath = negated ? `${props.path}.not` : props.path;
  const onInner = (n: FilterNode) => props.onChange(negated ? { not: n } : n);
  const onNegate = (v: boolean) => props.onChange(v ? { not: inner } : inner);
  const notErrors = negated ? errorsAt(props.ctx.errors, props.path, false) : [];
  if ("not" in inner) {
    // A double negation typed in JSON: show it as-is one level down.
    return <NodeEditor {...props} node={inner} path={innerPath} onChange={onInner} />;
  }
  return (
    <div class={negated ? "negated" : undefined}>
      <FieldErrors errors={notErrors} id={`err-${props.path.replace(/[^a-z0-9]/gi, "-")}`} />
      {isCondition(inner) ? (
        <ConditionEditor cond={inner} path={innerPath} name={`condition ${props.num}`} ctx={props.ctx} onChange={onInner} onRemove={props.onRemove} negated={negated} onNegate={onNegate} />
      ) : (
        <GroupEditor
          node={inner as { all: FilterNode[] }}
          path={innerPath}
          name={`group ${props.num}`}
          prefix={`${props.num}.`}
          ctx={props.ctx}
          depth={props.depth}
          onChange={onInner}
          onRemove={props.onRemove}
          negated={negated}
          onNegate={onNegate}
        />
      )}
    </div>
  );
}

function ConditionEditor(props: { cond: Condition; path: string; name: string; ctx: Ctx; onChange(c: Condition): void; onRemove(): void; negated: boolean; onNegate(v: boolean): void }) {
  const { cond, ctx, name } = props;
  const spec = FIELDS[cond.field];
  const errs = errorsAt(ctx.errors, props.path, true);
  const errId = `err-${props.path.replace(/[^a-z0-9]/gi, "-")}`;
  const set = (patch: Partial<Condition>) => {
    const next: Condition = { ...cond, ...patch };
    if (next.value === undefined) delete next.value;
    if (next.within_periods === undefined) delete next.within_periods;
    if (!next.fact) delete next.fact;
    props.onChange(next);
  };
  const fieldNames = Object.keys(FIELDS).filter((f) => !FIELDS[f]!.dayOnly || ctx.grain === "day" || f === cond.field);
  return (
    <div class={`condition${errs.length ? " invalid" : ""}`} role="group" aria-label={name} aria-describedby={errs.length ? errId : undefined}>
      <div class="row wrap">
        <NegateToggle name={name} negated={props.negated} onNegate={props.onNegate} />
        <select
          aria-label={`Field of ${name}`}
          value={cond.field}
          onChange={(e) => {
            const field = e.currentTarget.value;
            const ops = opsFor(field);
            const op = ops.includes(cond.op) ? cond.op : ops[0]!;
            set({ field, op, value: defaultValue(field, op, FIELDS[field]!.kind === spec?.kind ? cond.value : undefined), within_periods: FIELDS[field]!.within ? cond.within_periods : undefined });
          }}
        >
          {!spec && <option value={cond.field}>{cond.field}</option>}
          {fieldNames.map((f) => (
            <option key={f} value={f}>
              {label(f)}
            </option>
          ))}
        </select>
        <select aria-label={`Operator of ${name}`} value={cond.op} onChange={(e) => set({ op: e.currentTarget.value, value: defaultValue(cond.field, e.currentTarget.value, cond.value) })}>
          {(spec ? opsFor(cond.field) : [cond.op]).map((op) => (
            <option key={op} value={op}>
              {OP_LABELS[op] ?? op}
            </option>
          ))}
        </select>
        {spec && <ValueEditor cond={cond} name={name} grain={ctx.grain} onChange={(value) => set({ value })} />}
        <button type="button" class="icon" aria-label={`Remove ${name}`} onClick={props.onRemove}>
          ✕
        </button>
      </div>
      <div class="row wrap options">
        {spec?.within && (
          <label>
            held within the last{" "}
            <input
              type="number"
              min={1}
              max={366}
              class="narrow"
              aria-label={`Within how many periods (${name})`}
              value={cond.within_periods ?? ""}
              placeholder="—"
              onInput={(e) => set({ within_periods: e.currentTarget.value === "" ? undefined : Number(e.currentTarget.value) })}
            />{" "}
            {ctx.grain}s
          </label>
        )}
        <label>
          on fact{" "}
          <select aria-label={`Fact of ${name}`} value={cond.fact ?? ""} onChange={(e) => set({ fact: e.currentTarget.value || undefined })}>
            <option value="">{ctx.fact} (the audience's)</option>
            {ctx.facts
              .filter((f) => f !== ctx.fact)
              .map((f) => (
                <option key={f} value={f}>
                  {f}
                </option>
              ))}
            {cond.fact && !ctx.facts.includes(cond.fact) && <option value={cond.fact}>{cond.fact}</option>}
          </select>
        </label>
      </div>
      <FieldErrors errors={errs} id={errId} />
    </div>
  );
}

function ValueEditor({ cond, name, grain, onChange }: { cond: Condition; name: string; grain: Grain; onChange(v: Condition["value"]): void }) {
  const spec = FIELDS[cond.field]!;
  const op = cond.op;
  if (op === "is_null" || op === "is_not_null") return null;
  const v = cond.value;
  if (spec.kind === "enum" && (op === "in" || op === "not_in")) {
    const chosen = new Set(Array.isArray(v) ? (v as string[]) : []);
    return (
      <fieldset class="choices">
        <legend class="sr-only">Values of {name}</legend>
        {spec.values!.map((opt) => (
          <label key={opt}>
            <input
              type="checkbox"
              checked={chosen.has(opt)}
              onChange={(e) => {
                const next = new Set(chosen);
                if (e.currentTarget.checked) next.add(opt);
                else next.delete(opt);
                onChange(spec.values!.filter((x) => next.has(x)));
              }}
            />{" "}
            {label(opt)}
          </label>
        ))}
      </fieldset>
    );
  }
  if (spec.kind === "enum")
    return (
      <select aria-label={`Value of ${name}`} value={String(v)} onChange={(e) => onChange(e.currentTarget.value)}>
        {spec.values!.map((opt) => (
          <option key={opt} value={opt}>
            {label(opt)}
          </option>
        ))}
      </select>
    );
  if (spec.kind === "boolean")
    return (
      <select aria-label={`Value of ${name}`} value={String(v)} onChange={(e) => onChange(e.currentTarget.value === "true")}>
        <option value="true">true</option>
        <option value="false">false</option>
      </select>
    );
  if (op === "in" || op === "not_in") {
    const list = Array.isArray(v) ? v : [];
    const text = list.map((x) => (typeof x === "object" ? `${(x as { periods_ago: number }).periods_ago} ago` : String(x))).join(", ");
    return (
      <input
        aria-label={`Values of ${name} (comma-separated)`}
        value={text}
        onChange={(e) =>
          onChange(
            e.currentTarget.value
              .split(",")
              .map((s) => s.trim())
              .filter(Boolean)
              .map((s): Scalar => (spec.kind === "integer" ? Number(s) : /^\d+ ago$/.test(s) ? { periods_ago: Number(s.split(" ")[0]) } : s)),
          )
        }
      />
    );
  }
  if (op === "between") {
    const pair = (Array.isArray(v) ? v : [undefined, undefined]) as Scalar[];
    const put = (i: number, x: Scalar) => onChange(i === 0 ? [x, pair[1]!] : [pair[0]!, x]);
    return (
      <span class="row">
        <OneValue kind={spec.kind} grain={grain} label={`Low value of ${name}`} value={pair[0]} onChange={(x) => put(0, x)} />
        <span aria-hidden="true">and</span>
        <OneValue kind={spec.kind} grain={grain} label={`High value of ${name}`} value={pair[1]} onChange={(x) => put(1, x)} />
      </span>
    );
  }
  return <OneValue kind={spec.kind} grain={grain} label={`Value of ${name}`} value={v as Scalar} onChange={onChange} />;
}

function OneValue({ kind, grain, label: aria, value, onChange }: { kind: string; grain: Grain; label: string; value: Scalar | undefined; onChange(v: Scalar): void }) {
  if (kind === "integer")
    return (
      <input
        type="number"
        class="narrow"
        aria-label={aria}
        value={typeof value === "number" ? value : ""}
        onInput={(e) => {
          const s = e.currentTarget.value;
          // An unfinished number goes to the API as text, which names the mistake.
          onChange(s === "" || Number.isNaN(Number(s)) ? s : Number(s));
        }}
      />
    );
  // A period: a calendar date, or n periods before as_of (relative dates).
  const relative = typeof value === "object" && value !== null;
  return (
    <span class="row">
      <select
        aria-label={`${aria}: kind`}
        value={relative ? "ago" : "date"}
        onChange={(e) => onChange(e.currentTarget.value === "ago" ? { periods_ago: 7 } : new Date().toISOString().slice(0, 10))}
      >
        <option value="ago">{grain}s ago</option>
        <option value="date">on date</option>
      </select>
      {relative ? (
        <input
          type="number"
          min={0}
          class="narrow"
          aria-label={`${aria}: ${grain}s ago`}
          value={(value as { periods_ago: number }).periods_ago}
          onInput={(e) => {
            const s = e.currentTarget.value;
            // As for integers: an empty or unfinished number goes as text, which the API names, never as 0.
            onChange({ periods_ago: s === "" || Number.isNaN(Number(s)) ? s : Number(s) } as unknown as PeriodValue);
          }}
        />
      ) : (
        <input type="date" aria-label={`${aria}: date`} value={String(value ?? "")} onInput={(e) => onChange(e.currentTarget.value)} />
      )}
    </span>
  );
}
