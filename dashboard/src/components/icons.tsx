// Hand-drawn 20×20 stroke icons: no icon font, nothing fetched.
import type { SVGProps } from "react";

type IconProps = SVGProps<SVGSVGElement> & { size?: number };

function Icon({ size = 18, children, ...rest }: IconProps & { children: React.ReactNode }) {
  return (
    <svg
      width={size}
      height={size}
      viewBox="0 0 20 20"
      fill="none"
      stroke="currentColor"
      strokeWidth={1.7}
      strokeLinecap="round"
      strokeLinejoin="round"
      aria-hidden="true"
      {...rest}
    >
      {children}
    </svg>
  );
}

export const IconOverview = (p: IconProps) => (
  <Icon {...p}><path d="M3 17V9M8 17V4M13 17v-6M18 17V7" /></Icon>
);
export const IconAccounts = (p: IconProps) => (
  <Icon {...p}><circle cx="7" cy="7" r="3" /><path d="M1.5 17c.6-3 2.7-4.5 5.5-4.5s4.9 1.5 5.5 4.5" /><path d="M13 4.2a3 3 0 0 1 0 5.6M15 12.8c1.8.6 3 2 3.5 4.2" /></Icon>
);
export const IconKey = (p: IconProps) => (
  <Icon {...p}><circle cx="6.5" cy="13.5" r="3.5" /><path d="M9 11l8-8M14 6l2.5 2.5M12 8l1.8 1.8" /></Icon>
);
export const IconLogs = (p: IconProps) => (
  <Icon {...p}><path d="M4 4h12M4 8h12M4 12h8M4 16h6" /></Icon>
);
export const IconUsage = (p: IconProps) => (
  <Icon {...p}><circle cx="10" cy="10" r="7.5" /><path d="M10 2.5V10h7.5" /></Icon>
);
export const IconSun = (p: IconProps) => (
  <Icon {...p}><circle cx="10" cy="10" r="3.5" /><path d="M10 1.5v2M10 16.5v2M1.5 10h2M16.5 10h2M4 4l1.4 1.4M14.6 14.6 16 16M4 16l1.4-1.4M14.6 5.4 16 4" /></Icon>
);
export const IconMoon = (p: IconProps) => (
  <Icon {...p}><path d="M16.5 12.5A7 7 0 0 1 7.5 3.5a7 7 0 1 0 9 9z" /></Icon>
);
export const IconLogout = (p: IconProps) => (
  <Icon {...p}><path d="M12 4V3H4v14h8v-1M8 10h10M15 7l3 3-3 3" /></Icon>
);
export const IconPlus = (p: IconProps) => (
  <Icon {...p}><path d="M10 4v12M4 10h12" /></Icon>
);
export const IconCopy = (p: IconProps) => (
  <Icon {...p}><rect x="7" y="7" width="10" height="10" rx="2" /><path d="M13 4.5V4a1 1 0 0 0-1-1H4a1 1 0 0 0-1 1v8a1 1 0 0 0 1 1h.5" /></Icon>
);
export const IconCheck = (p: IconProps) => (
  <Icon {...p}><path d="m4 10.5 4 4 8-9" /></Icon>
);
export const IconX = (p: IconProps) => (
  <Icon {...p}><path d="M5 5l10 10M15 5 5 15" /></Icon>
);
export const IconRefresh = (p: IconProps) => (
  <Icon {...p}><path d="M16 10a6 6 0 1 1-1.8-4.3M16 3.5v3.5h-3.5" /></Icon>
);
export const IconTrash = (p: IconProps) => (
  <Icon {...p}><path d="M3.5 5.5h13M8 5.5V3.5h4v2M5 5.5l1 11h8l1-11" /></Icon>
);
export const IconEdit = (p: IconProps) => (
  <Icon {...p}><path d="M12.5 3.5l4 4L7 17H3v-4z" /></Icon>
);
export const IconLink = (p: IconProps) => (
  <Icon {...p}><path d="M8.5 11.5a3.5 3.5 0 0 0 5 0l2.5-2.5a3.5 3.5 0 0 0-5-5l-1 1M11.5 8.5a3.5 3.5 0 0 0-5 0L4 11a3.5 3.5 0 0 0 5 5l1-1" /></Icon>
);
export const IconAlert = (p: IconProps) => (
  <Icon {...p}><path d="M10 2.5 1.8 17h16.4z" /><path d="M10 8v4M10 14.5v.01" /></Icon>
);
export const IconChevron = (p: IconProps) => (
  <Icon {...p}><path d="m7.5 4.5 5.5 5.5-5.5 5.5" /></Icon>
);
export const IconPlay = (p: IconProps) => (
  <Icon {...p}><path d="M6 4l10 6-10 6z" /></Icon>
);
export const IconPause = (p: IconProps) => (
  <Icon {...p}><path d="M7 4v12M13 4v12" /></Icon>
);
export const IconExternal = (p: IconProps) => (
  <Icon {...p}><path d="M11 3h6v6M17 3l-8 8M15 12v5H3V5h5" /></Icon>
);

export function Logo({ size = 28 }: { size?: number }) {
  return (
    <svg width={size} height={size} viewBox="0 0 32 32" aria-hidden="true">
      <rect width="32" height="32" rx="8" className="fill-teal-600" />
      <path d="M6 20c5-1 8-4 10-9 1 3 4 5 10 5-4 2-7 2-10 1-2 3-5 4-10 3z" fill="#fff" />
    </svg>
  );
}
