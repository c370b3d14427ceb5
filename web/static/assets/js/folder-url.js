// folder-url.js: which provider a pasted folder URL belongs to, checked before it is
// sent. The Import Service parses it again (and is the authority); this only explains
// the common mistakes early. Forms: docs/import.md, import-service/src/providers/folder_url.rs.

const DRIVE_HOSTS = ["drive.google.com"];
const DROPBOX_HOSTS = ["www.dropbox.com", "dropbox.com"];

/** → {provider: "google-drive" | "dropbox"} or {error: "why"} */
export function checkFolderUrl(text) {
  const raw = text.trim();
  if (!raw) return { error: "Paste the link of a shared Google Drive or Dropbox folder." };
  let url;
  try {
    url = new URL(raw);
  } catch {
    return { error: "That is not a link. Copy the folder's share link (it starts with https://)." };
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    return { error: "Only https:// links to Google Drive or Dropbox folders are accepted." };
  }
  if (url.username || url.password || url.port) {
    return { error: "Folder links have no user name, password or port: copy the share link again." };
  }
  const host = url.hostname.toLowerCase();
  const path = url.pathname;
  if (DRIVE_HOSTS.includes(host)) {
    if (/^\/file\/d\//.test(path)) {
      return { error: "That is a link to one file. Share the folder that holds the images instead." };
    }
    const folder = /^\/drive\/(?:u\/\d+\/|mobile\/)?folders\/[\w-]+(?:\/.*)?$/.test(path);
    const byId = /^\/(?:open|folderview)$/.test(path) && url.searchParams.get("id");
    return folder || byId
      ? { provider: "google-drive" }
      : { error: "A Google Drive folder link looks like https://drive.google.com/drive/folders/…" };
  }
  if (DROPBOX_HOSTS.includes(host)) {
    if (/^\/(?:s|scl\/fi)\//.test(path)) {
      return { error: "That is a Dropbox link to one file. Share the folder instead." };
    }
    const legacy = /^\/sh\/[\w.-]+\/[\w.-]+(?:\/.*)?$/.test(path);
    const current = /^\/scl\/fo\/[\w.-]+(?:\/[\w.-]+)?\/?$/.test(path) && url.searchParams.get("rlkey");
    return legacy || current
      ? { provider: "dropbox" }
      : { error: "A Dropbox folder link looks like https://www.dropbox.com/scl/fo/…?rlkey=…" };
  }
  return { error: "Only Google Drive (drive.google.com) and Dropbox (dropbox.com) folder links can be imported." };
}
