// The runtime's index types are the only ones: the actors name the layer, GPU batch and step the runtime schedules.
global using LayerIndex = ActorInfer.Runtime.Schedule.LayerIndex;
global using GpuBatchIndex = ActorInfer.Runtime.Schedule.GpuBatchIndex;
global using TokenStep = ActorInfer.Runtime.Schedule.TokenStep;
