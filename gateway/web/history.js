// "Your transcripts": the jobs this browser started or opened, kept in localStorage (id, token,
// title, duration, status, date), newest first. Nothing of it is sent anywhere.

const KEY = "scribe.jobs";
const MAX = 50;

/** The remembered jobs, newest first. */
export function remembered() {
  let jobs;
  try {
    jobs = JSON.parse(localStorage.getItem(KEY) || "[]");
  } catch {
    jobs = [];
  }
  return (Array.isArray(jobs) ? jobs : [])
    .filter((job) => job && typeof job.id === "string" && typeof job.token === "string")
    .sort((a, b) => String(b.created).localeCompare(String(a.created)));
}

/** Adds a job or updates what is known of it (fields that are undefined are left as they were). */
export function remember(job) {
  const jobs = remembered();
  const known = jobs.find((other) => other.id === job.id);
  const fields = Object.fromEntries(Object.entries(job).filter(([, value]) => value !== undefined && value !== null));
  if (known) Object.assign(known, fields);
  else jobs.unshift({ created: new Date().toISOString(), title: null, duration: null, status: null, ...fields });
  save(jobs.slice(0, MAX));
}

export function forget(id) {
  save(remembered().filter((job) => job.id !== id));
}

function save(jobs) {
  try {
    localStorage.setItem(KEY, JSON.stringify(jobs));
  } catch {
    // Storage full or off (a private window): the list is a convenience, the links still work.
  }
}
