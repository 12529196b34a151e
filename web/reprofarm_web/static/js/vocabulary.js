// The farm's words (scenarios, labels, run, job and agent states) as the api's own
// OpenAPI document lists them: the protocol package owns these lists, and the
// dashboard reads them instead of keeping a copy that could drift.

let cached = null;

export async function vocabulary() {
  if (cached) { return cached; }
  const response = await fetch("/openapi.json");
  const doc = await response.json();
  const schemas = doc.components.schemas;
  const labels = schemas.Label.enum.filter((l) => l !== "no-hang");
  cached = {
    scenarios: schemas.JobCreate.properties.scenario.enum,
    // "pending": a hang not analysed yet (docs/analyzer.md, "In the farm").
    labels: [...labels, "pending"],
    runStates: schemas.RunState.enum,
    jobStates: schemas.JobState.enum,
    fanOuts: schemas.FanOut.enum,
    agentStates: schemas.AgentState.enum,
    agentHealth: schemas.AgentHealth.enum,
  };
  return cached;
}
