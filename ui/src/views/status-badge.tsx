import type { TaskStatus } from "../../../src/client/index.js";
import { t } from "../i18n/index.js";

export function StatusBadge(props: { status: TaskStatus | "cancelled" }) {
  return (
    <span class={`badge status-${props.status}`} data-status={props.status}>
      {t(`status.${props.status}`)}
    </span>
  );
}

export function Progress(props: { value: number }) {
  return (
    <span class="progress">
      <progress max={100} value={props.value} />
      <span>{props.value}%</span>
    </span>
  );
}
